"""Writing and reading datasets in the catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from db.engine import session_scope
from db.models import Dataset, DatasetAttribute, Release, Run, Sample, SampleAttribute, Score

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


def _by_name(session: Any, model: Any, name: str, what: str) -> Any:
    """The ``model`` row named ``name``; KeyError listing the known names when there is none."""
    row = session.scalar(select(model).where(model.name == name))
    if row is None:
        known = sorted(session.scalars(select(model.name)))
        raise KeyError(f"no {what} named {name!r} in the catalog (known: {known})")
    return row


def _as_dict(row: Any) -> dict[str, Any]:
    """A mapped row as ``{column: value}``."""
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}


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
        ds = _by_name(session, Dataset, dataset, "dataset")
        out: dict[str, dict[str, str | None]] = {}
        q = (
            select(Sample.sample_key, SampleAttribute.name, SampleAttribute.value)
            .join(SampleAttribute, SampleAttribute.sample_id == Sample.id)
            .where(Sample.dataset_id == ds.id)
        )
        for key, name, value in session.execute(q):
            out.setdefault(key, {})[name] = value
        return out


def dataset_samples(engine: Engine, dataset: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A dataset's record and its samples, each with its attributes.

    Returns:
        ``(dataset, samples)``: ``dataset`` has ``id, name, kind, root, recipe, info, provenance``
        (attribute -> provenance); each sample has its ``samples`` columns plus ``attributes``
        (``{name: text value}``), ordered by ``sample_key``.

    Raises:
        KeyError: no dataset of that name (the message lists the known ones).
    """
    with session_scope(engine) as session:
        ds = _by_name(session, Dataset, dataset, "dataset")
        prov = dict(session.execute(select(DatasetAttribute.name, DatasetAttribute.provenance).where(DatasetAttribute.dataset_id == ds.id)).all())
        info = {"id": ds.id, "name": ds.name, "kind": ds.kind, "root": ds.root, "recipe": ds.recipe, "info": ds.info, "provenance": prov}
        rows = {r.id: _as_dict(r) | {"attributes": {}} for r in session.scalars(select(Sample).where(Sample.dataset_id == ds.id))}
        q = select(SampleAttribute.sample_id, SampleAttribute.name, SampleAttribute.value).join(Sample).where(Sample.dataset_id == ds.id)
        for sid, name, value in session.execute(q):
            rows[sid]["attributes"][name] = value
        return info, sorted(rows.values(), key=lambda r: r["sample_key"])


def register_release(
    engine: Engine, name: str, kind: str, path: str, threshold: float, manifest: dict[str, Any] | None = None,
    version: str | None = None, confidence_proxy: bool = False,
) -> int:
    """Register (or replace) a release; replacing deletes its earlier runs and their scores.

    Returns:
        The new ``releases.id``.
    """
    with session_scope(engine) as session:
        session.execute(delete(Release).where(Release.name == name))
        rel = Release(name=name, kind=kind, path=str(path), threshold=float(threshold), manifest=manifest, version=version, confidence_proxy=confidence_proxy)
        session.add(rel)
        session.flush()
        return rel.id


def get_release(engine: Engine, name: str) -> dict[str, Any]:
    """A release as a dict of its columns.

    Raises:
        KeyError: no release of that name (the message lists the known ones).
    """
    with session_scope(engine) as session:
        return _as_dict(_by_name(session, Release, name, "release"))


def list_releases(engine: Engine) -> list[dict[str, Any]]:
    """Every release as a dict of its columns, by name."""
    with session_scope(engine) as session:
        return [_as_dict(r) for r in session.scalars(select(Release).order_by(Release.name))]


SCORE_FIELDS = ("iou", "dice", "precision", "recall", "boundary_f1", "boundary_iou", "mae", "sad", "mse", "grad", "conn")


def register_run(
    engine: Engine, path: str, release: str, dataset: str, settings: dict[str, Any], summary: dict[str, Any],
    scores: Sequence[Mapping[str, Any]],
) -> int:
    """Store a scoring run and its per-sample scores (a run at the same ``path`` is replaced).

    Args:
        scores: one mapping per scored sample with ``sample_key``, ``confidence``, ``accepted``,
            ``acceptable``, ``prediction_resized`` and the metric fields of :data:`SCORE_FIELDS`
            (NaN or None stored as NULL).

    Raises:
        KeyError: unknown release, dataset or sample key (named).
    """
    def num(v):
        return None if v is None or (isinstance(v, float) and v != v) else float(v)

    with session_scope(engine) as session:
        rel_id = session.scalar(select(Release.id).where(Release.name == release))
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        if rel_id is None or ds_id is None:
            raise KeyError(f"release {release!r} or dataset {dataset!r} is not in the catalog")
        session.execute(delete(Run).where(Run.path == str(path)))
        run = Run(path=str(path), release_id=rel_id, dataset_id=ds_id, settings=settings, summary=summary, n_scored=len(scores))
        session.add(run)
        session.flush()
        ids = dict(session.execute(select(Sample.sample_key, Sample.id).where(Sample.dataset_id == ds_id)).all())
        missing = [s["sample_key"] for s in scores if s["sample_key"] not in ids]
        if missing:
            raise KeyError(f"run {path}: sample keys not in dataset {dataset!r}: {missing[:10]}")
        rows = [
            {
                "run_id": run.id, "sample_id": ids[s["sample_key"]],
                **{f: num(s.get(f)) for f in SCORE_FIELDS},
                "confidence": float(s["confidence"]), "accepted": bool(s["accepted"]),
                "acceptable": bool(s["acceptable"]), "prediction_resized": bool(s.get("prediction_resized", False)),
            }
            for s in scores
        ]
        if rows:
            session.execute(insert(Score), rows)
        return run.id


def run_scores(engine: Engine, path: str) -> list[dict[str, Any]]:
    """The per-sample scores of the run stored at ``path``, joined with their sample keys.

    Raises:
        KeyError: no run at that path.
    """
    with session_scope(engine) as session:
        run_id = session.scalar(select(Run.id).where(Run.path == str(path)))
        if run_id is None:
            raise KeyError(f"no run stored at {path!r}")
        cols = [c for c in Score.__table__.columns if c.name not in ("id", "run_id")]
        q = select(Sample.sample_key, *cols).join(Sample, Sample.id == Score.sample_id).where(Score.run_id == run_id).order_by(Sample.sample_key)
        return [dict(r._mapping) for r in session.execute(q)]
