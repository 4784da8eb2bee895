"""Writing and reading datasets in the catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from db.engine import session_scope
from db.models import Dataset, DatasetAttribute, Sample, SampleAttribute

PROVENANCES = ("annotated", "self-reported", "estimated", "derived")


@dataclass
class SampleRecord:
    """One sample to register: its key, files (relative to the dataset root) and attributes."""

    sample_key: str
    image_path: str
    mask_path: str | None = None
    alpha_path: str | None = None
    trimap_path: str | None = None
    split: str | None = None
    has_subject: bool = True
    n_subjects: int = 1
    width: int | None = None
    height: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def register_dataset(
    engine: Engine,
    name: str,
    kind: str,
    root: str,
    samples: Sequence[SampleRecord],
    provenance: Mapping[str, str] | None = None,
    recipe: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> int:
    """Register (or replace) a dataset with all its samples and sample attributes.

    A dataset of the same ``name`` is deleted first, with its samples and attributes, so
    re-registering a rebuilt dataset never leaves stale rows. Booleans are stored as
    ``"true"``/``"false"``, missing values (None, NaN) as NULL.

    Args:
        engine: a migrated catalog engine (see :func:`db.connect`).
        name: unique dataset name.
        kind: ``"synth"`` or ``"imported"``.
        root: directory the sample paths are relative to.
        samples: the samples; ``sample_key`` must be unique.
        provenance: attribute name -> one of ``annotated``, ``self-reported``, ``estimated``,
            ``derived``; attributes not listed get ``annotated``.
        recipe, info: JSON documents stored with the dataset.

    Returns:
        The new ``datasets.id``.

    Raises:
        ValueError: duplicate sample keys, or an unknown provenance (names the attribute).
    """
    provenance = dict(provenance or {})
    keys = [s.sample_key for s in samples]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dups = sorted({k for k in keys if k in seen or seen.add(k)})
        raise ValueError(f"dataset {name!r}: duplicate sample keys {dups[:10]}")
    for attr, prov in provenance.items():
        if prov not in PROVENANCES:
            raise ValueError(f"dataset {name!r}: attribute {attr!r} has provenance {prov!r}, not one of {PROVENANCES}")
    attr_names = sorted({a for s in samples for a in s.attributes})
    with session_scope(engine) as session:
        session.execute(delete(Dataset).where(Dataset.name == name))
        dataset = Dataset(
            name=name, kind=kind, root=str(root), recipe=recipe, info=info, n_samples=len(samples)
        )
        session.add(dataset)
        session.flush()
        for attr in attr_names:
            session.add(DatasetAttribute(dataset_id=dataset.id, name=attr, provenance=provenance.get(attr, "annotated")))
        rows = [
            {
                "dataset_id": dataset.id,
                "sample_key": s.sample_key,
                "split": s.split,
                "image_path": s.image_path,
                "mask_path": s.mask_path,
                "alpha_path": s.alpha_path,
                "trimap_path": s.trimap_path,
                "has_subject": bool(s.has_subject),
                "n_subjects": int(s.n_subjects),
                "width": s.width,
                "height": s.height,
            }
            for s in samples
        ]
        if rows:
            session.execute(insert(Sample), rows)
        ids = dict(session.execute(select(Sample.sample_key, Sample.id).where(Sample.dataset_id == dataset.id)).all())
        attr_rows = [
            {"sample_id": ids[s.sample_key], "name": k, "value": _as_text(v)}
            for s in samples
            for k, v in sorted(s.attributes.items())
        ]
        if attr_rows:
            session.execute(insert(SampleAttribute), attr_rows)
        return dataset.id


def dataset_summary(engine: Engine) -> list[dict[str, Any]]:
    """List every dataset with its kind, root and sample count (counted from ``samples``)."""
    with session_scope(engine) as session:
        counts = dict(session.execute(select(Sample.dataset_id, func.count()).group_by(Sample.dataset_id)).all())
        return [
            {"id": d.id, "name": d.name, "kind": d.kind, "root": d.root, "n_samples": counts.get(d.id, 0)}
            for d in session.scalars(select(Dataset).order_by(Dataset.name))
        ]


def sample_attributes(engine: Engine, dataset: str) -> dict[str, dict[str, str | None]]:
    """All attributes of a dataset's samples: ``{sample_key: {name: value}}``.

    Raises:
        KeyError: no dataset of that name.
    """
    with session_scope(engine) as session:
        ds = session.scalar(select(Dataset).where(Dataset.name == dataset))
        if ds is None:
            raise KeyError(f"no dataset named {dataset!r} in the catalog")
        out: dict[str, dict[str, str | None]] = {}
        q = (
            select(Sample.sample_key, SampleAttribute.name, SampleAttribute.value)
            .join(SampleAttribute, SampleAttribute.sample_id == Sample.id)
            .where(Sample.dataset_id == ds.id)
        )
        for key, name, value in session.execute(q):
            out.setdefault(key, {})[name] = value
        return out
