"""Writing and reading the catalog: versioned datasets and releases, runs with their per-sample
scores, what depends on what, and the one explicit delete.

Nothing here replaces a row by delete + insert. Registering content identical to a name's newest
revision is a no-op; different content adds a revision and leaves the earlier ones, and everything
that depends on them, in place. A name alone means its newest revision; ``name@N`` means revision N.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, insert, or_, select
from sqlalchemy import delete as sa_delete

from db.engine import session_scope
from db.models import (
    Assignment, Campaign, CampaignItem, Dataset, DatasetAttribute, MetricValue, Rater, Rating, RatingRevision, Release, Run, Sample,
    SampleAttribute, Score, TruthVersion,
)

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


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a dataset or release.

    Attributes:
        id: the row id (``datasets.id`` / ``releases.id``) of the revision that holds the content.
        name: the registered name.
        revision: its revision number (1, 2, ...).
        created: False when identical content was already the newest revision (nothing written).
    """

    id: int
    name: str
    revision: int
    created: bool

    @property
    def ref(self) -> str:
        """``name@revision``."""
        return f"{self.name}@{self.revision}"


def content_hash(doc: Any) -> str:
    """SHA-256 (hex) of a JSON document with sorted keys: the identity of registered content."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` -> ``(name, None)`` (the newest revision), ``"name@3"`` -> ``(name, 3)``.

    Raises:
        KeyError: a revision that is not a positive integer.
    """
    name, sep, rev = str(ref).rpartition("@")
    if not sep:
        return str(ref), None
    if not rev.isdigit() or int(rev) < 1:
        raise KeyError(f"{ref!r}: a revision is written name@N with N = 1, 2, ...")
    return name, int(rev)


def _resolve(session: Any, model: Any, ref: str, what: str) -> Any:
    """The row of ``model`` for ``ref`` (``name`` or ``name@N``).

    Raises:
        KeyError: no such name or revision (the message lists the known names or revisions).
    """
    name, rev = parse_ref(ref)
    q = select(model).where(model.name == name)
    row = session.scalar(q.where(model.revision == rev) if rev else q.order_by(model.revision.desc()).limit(1))
    if row is None:
        revs = sorted(session.scalars(select(model.revision).where(model.name == name)))
        if revs:
            raise KeyError(f"{what} {name!r} has no revision {rev} (revisions: {revs})")
        known = sorted(set(session.scalars(select(model.name))))
        raise KeyError(f"no {what} named {name!r} in the catalog (known: {known})")
    return row


def _register(session: Any, model: Any, name: str, digest: str, fields: dict[str, Any]) -> tuple[Any, bool]:
    """The newest revision of ``name`` when its hash is ``digest``, else a new revision."""
    latest = session.scalar(select(model).where(model.name == name).order_by(model.revision.desc()).limit(1))
    if latest is not None and latest.content_hash == digest:
        return latest, False
    row = model(name=name, revision=(latest.revision + 1) if latest is not None else 1, content_hash=digest, **fields)
    session.add(row)
    session.flush()
    return row, True


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
    targets: dict[str, Any] | None = None,
) -> Registration:
    """Register a dataset with all its samples and sample attributes, as a new revision.

    The content (kind, root, every sample record and attribute, provenance, recipe, targets) is
    hashed; when it equals the newest revision of ``name`` nothing is written. Otherwise a new
    revision is added and every earlier revision stays, with the runs, campaigns and ratings that
    depend on it. Booleans are stored as ``"true"``/``"false"``, missing values (None, NaN) as NULL.

    Args:
        engine: a migrated catalog engine (see :func:`db.connect`).
        name: dataset name.
        kind: ``"synth"`` or ``"imported"``.
        root: directory the sample paths are relative to.
        samples: the samples; ``sample_key`` must be unique.
        provenance: attribute name -> one of ``annotated``, ``self-reported``, ``estimated``,
            ``derived``; attributes not listed get ``annotated``.
        recipe, info: JSON documents stored with the dataset (``info`` is not part of the content:
            timings and counts of a re-run do not make a new revision).
        targets: what a build was asked for (:func:`synth.build` stores negatives, splits and the
            balance cells with their counts); read back by ``fairness audit``.

    Returns:
        The :class:`Registration` (``created`` False when nothing was written).

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
    prov_all = {a: provenance.get(a, "annotated") for a in attr_names}
    records = [
        {**{k: getattr(s, k) for k in ("sample_key", "split", "image_path", "mask_path", "alpha_path", "trimap_path", "width", "height")},
         "has_subject": bool(s.has_subject), "n_subjects": int(s.n_subjects),
         "attributes": {k: _as_text(v) for k, v in sorted(s.attributes.items())}}
        for s in sorted(samples, key=lambda r: r.sample_key)
    ]
    digest = content_hash({"kind": kind, "root": str(root), "samples": records, "provenance": prov_all, "recipe": recipe, "targets": targets})
    with session_scope(engine) as session:
        dataset, created = _register(session, Dataset, name, digest, {
            "kind": kind, "root": str(root), "recipe": recipe, "info": info, "n_samples": len(samples), "targets": targets,
        })
        if not created:
            return Registration(dataset.id, name, dataset.revision, False)
        for attr in attr_names:
            session.add(DatasetAttribute(dataset_id=dataset.id, name=attr, provenance=prov_all[attr]))
        rows = [{"dataset_id": dataset.id, **{k: v for k, v in r.items() if k != "attributes"}} for r in records]
        if rows:
            session.execute(insert(Sample), rows)
        ids = dict(session.execute(select(Sample.sample_key, Sample.id).where(Sample.dataset_id == dataset.id)).all())
        attr_rows = [{"sample_id": ids[r["sample_key"]], "name": k, "value": v} for r in records for k, v in r["attributes"].items()]
        if attr_rows:
            session.execute(insert(SampleAttribute), attr_rows)
        return Registration(dataset.id, name, dataset.revision, True)


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
    """Every dataset's newest revision with its kind, root, sample count (counted from ``samples``)
    and how many earlier revisions it has."""
    with session_scope(engine) as session:
        counts = dict(session.execute(select(Sample.dataset_id, func.count()).group_by(Sample.dataset_id)).all())
        newest: dict[str, Dataset] = {}
        n_rev: dict[str, int] = {}
        for d in session.scalars(select(Dataset).order_by(Dataset.name, Dataset.revision)):
            newest[d.name] = d
            n_rev[d.name] = n_rev.get(d.name, 0) + 1
        return [
            {"id": d.id, "name": d.name, "revision": d.revision, "earlier_revisions": n_rev[d.name] - 1, "kind": d.kind,
             "root": d.root, "n_samples": counts.get(d.id, 0)}
            for d in newest.values()
        ]


def sample_attributes(engine: Engine, dataset: str) -> dict[str, dict[str, str | None]]:
    """All attributes of a dataset's samples: ``{sample_key: {name: value}}``.

    Raises:
        KeyError: no dataset ``name`` or ``name@N``.
    """
    with session_scope(engine) as session:
        ds = _resolve(session, Dataset, dataset, "dataset")
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
    """A dataset revision's record and its samples, each with its attributes.

    Args:
        dataset: ``name`` (newest revision) or ``name@N``.

    Returns:
        ``(dataset, samples)``: ``dataset`` has ``id, name, revision, kind, root, recipe, info,
        targets, provenance`` (attribute -> provenance); each sample has its ``samples`` columns
        plus ``attributes`` (``{name: text value}``), ordered by ``sample_key``.

    Raises:
        KeyError: no such dataset or revision (the message lists the known ones).
    """
    with session_scope(engine) as session:
        ds = _resolve(session, Dataset, dataset, "dataset")
        prov = dict(session.execute(select(DatasetAttribute.name, DatasetAttribute.provenance).where(DatasetAttribute.dataset_id == ds.id)).all())
        info = {k: getattr(ds, k) for k in ("id", "name", "revision", "kind", "root", "recipe", "info", "targets")} | {"provenance": prov}
        rows = {r.id: _as_dict(r) | {"attributes": {}} for r in session.scalars(select(Sample).where(Sample.dataset_id == ds.id))}
        q = select(SampleAttribute.sample_id, SampleAttribute.name, SampleAttribute.value).join(Sample).where(Sample.dataset_id == ds.id)
        for sid, name, value in session.execute(q):
            rows[sid]["attributes"][name] = value
        return info, sorted(rows.values(), key=lambda r: r["sample_key"])


def register_release(
    engine: Engine, name: str, kind: str, path: str, threshold: float, manifest: dict[str, Any] | None = None,
    version: str | None = None, confidence_proxy: bool = False, content: str | None = None,
) -> Registration:
    """Register a release as a new revision, or find identical content already registered.

    Args:
        content: a digest of what the release predicts with (the ONNX file's SHA-256, or the
            predictions folder's listing): with the kind, path, threshold, manifest, version and
            proxy flag it makes the release's content hash.

    Returns:
        The :class:`Registration`; earlier revisions and their runs stay.
    """
    digest = content_hash({"kind": kind, "path": str(path), "threshold": float(threshold), "manifest": manifest,
                           "version": version, "proxy": bool(confidence_proxy), "content": content})
    with session_scope(engine) as session:
        rel, created = _register(session, Release, name, digest, {
            "kind": kind, "path": str(path), "threshold": float(threshold), "manifest": manifest, "version": version,
            "confidence_proxy": confidence_proxy,
        })
        return Registration(rel.id, name, rel.revision, created)


def get_release(engine: Engine, name: str) -> dict[str, Any]:
    """A release revision as a dict of its columns (``name`` = newest revision, or ``name@N``).

    Raises:
        KeyError: no such release or revision (the message lists the known ones).
    """
    with session_scope(engine) as session:
        return _as_dict(_resolve(session, Release, name, "release"))


def list_releases(engine: Engine) -> list[dict[str, Any]]:
    """Every release revision as a dict of its columns, by name and revision."""
    with session_scope(engine) as session:
        return [_as_dict(r) for r in session.scalars(select(Release).order_by(Release.name, Release.revision))]


# --- runs -----------------------------------------------------------------------------------------

SCORE_COLUMNS = ("confidence", "accepted", "acceptable", "prediction_resized")


@dataclass(frozen=True)
class RunRecord:
    """A stored run: where it is, what it scored and how.

    Attributes:
        id: ``runs.id``.
        path: its run folder (an export; the catalog holds the numbers).
        release, dataset: ``name@revision`` of what was scored.
        release_id, dataset_id: their row ids.
        settings: the scoring settings.
        summary: the whole run summary.
        n_scored: scored samples.
    """

    id: int
    path: str
    release: str
    dataset: str
    release_id: int
    dataset_id: int
    settings: dict[str, Any]
    summary: dict[str, Any]
    n_scored: int


def _run_record(session: Any, run: Run) -> RunRecord:
    rel, ds = session.get(Release, run.release_id), session.get(Dataset, run.dataset_id)
    return RunRecord(run.id, run.path, f"{rel.name}@{rel.revision}", f"{ds.name}@{ds.revision}", rel.id, ds.id,
                     dict(run.settings or {}), dict(run.summary or {}), run.n_scored)


def find_run(engine: Engine, ref: str | int) -> RunRecord | None:
    """The run stored at folder ``ref`` (a path string) or with id ``ref`` (an int); None if none."""
    with session_scope(engine) as session:
        run = session.get(Run, ref) if isinstance(ref, int) else session.scalar(select(Run).where(Run.path == str(ref)))
        return None if run is None else _run_record(session, run)


def register_run(
    engine: Engine, path: str, release_id: int, dataset_id: int, settings: dict[str, Any], summary: dict[str, Any],
    scores: Sequence[Mapping[str, Any]], metrics: Sequence[str],
) -> int:
    """Store a scoring run, its per-sample scores and their metric values.

    A folder holds one run: a run already stored at ``path`` is never replaced (see
    :func:`delete` to remove one explicitly).

    Args:
        release_id, dataset_id: the revisions scored.
        scores: one mapping per scored sample with ``sample_key``, ``confidence``, ``accepted``,
            ``acceptable``, ``prediction_resized`` and a value for each of ``metrics`` (NaN or None
            stored as NULL).
        metrics: the per-image metric names to store (registry names, :mod:`evalhub.registry`).

    Returns:
        The new ``runs.id``.

    Raises:
        ValueError: a run is already stored at ``path`` (named, with its release and dataset).
        KeyError: a sample key that is not in the dataset revision (named).
    """
    def num(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and v != v) else float(v)

    with session_scope(engine) as session:
        old = session.scalar(select(Run).where(Run.path == str(path)))
        if old is not None:
            rec = _run_record(session, old)
            raise ValueError(f"{path} already holds run {rec.id} ({rec.release} on {rec.dataset}); a folder holds one run")
        run = Run(path=str(path), release_id=release_id, dataset_id=dataset_id, settings=settings, summary=summary, n_scored=len(scores))
        session.add(run)
        session.flush()
        ids = dict(session.execute(select(Sample.sample_key, Sample.id).where(Sample.dataset_id == dataset_id)).all())
        missing = [s["sample_key"] for s in scores if s["sample_key"] not in ids]
        if missing:
            raise KeyError(f"run {path}: sample keys not in the dataset: {missing[:10]}")
        rows = [
            {"run_id": run.id, "sample_id": ids[s["sample_key"]], "confidence": float(s["confidence"]), "accepted": bool(s["accepted"]),
             "acceptable": bool(s["acceptable"]), "prediction_resized": bool(s.get("prediction_resized", False))}
            for s in scores
        ]
        if rows:
            session.execute(insert(Score), rows)
        score_ids = dict(session.execute(select(Score.sample_id, Score.id).where(Score.run_id == run.id)).all())
        values = [
            {"score_id": score_ids[ids[s["sample_key"]]], "metric": m, "value": num(s.get(m))}
            for s in scores for m in metrics
        ]
        if values:
            session.execute(insert(MetricValue), values)
        return run.id


def run_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """The per-sample rows of a run, straight from the catalog.

    Returns:
        One row per scored sample, ordered by ``sample_key``: ``sample_key, split, has_subject,
        image_path, mask_path, width, height`` (the sample), ``confidence, accepted, acceptable,
        prediction_resized`` (the score), one float column per stored metric (NaN where NULL) and one
        ``attr_<name>`` text column per attribute of the dataset revision (None where missing).
    """
    with session_scope(engine) as session:
        q = (select(Score.id, Sample.id.label("sample_id"), Sample.sample_key, Sample.split, Sample.has_subject, Sample.image_path,
                    Sample.mask_path, Sample.width, Sample.height, *[getattr(Score, c) for c in SCORE_COLUMNS])
             .join(Sample, Sample.id == Score.sample_id).where(Score.run_id == run_id))
        base = pd.DataFrame(session.execute(q).all(), columns=["score_id", "sample_id", "sample_key", "split", "has_subject", "image_path",
                                                               "mask_path", "width", "height", *SCORE_COLUMNS])
        vals = pd.DataFrame(session.execute(select(MetricValue.score_id, MetricValue.metric, MetricValue.value)
                                            .join(Score, Score.id == MetricValue.score_id).where(Score.run_id == run_id)).all(),
                            columns=["score_id", "metric", "value"])
        attrs = pd.DataFrame(session.execute(select(SampleAttribute.sample_id, SampleAttribute.name, SampleAttribute.value)
                                             .join(Score, Score.sample_id == SampleAttribute.sample_id).where(Score.run_id == run_id)).all(),
                             columns=["sample_id", "name", "value"])
    for c in ("has_subject", "accepted", "acceptable", "prediction_resized"):
        base[c] = base[c].astype(bool)
    base["confidence"] = base["confidence"].astype(float)
    if len(vals):
        wide = vals.pivot(index="score_id", columns="metric", values="value").astype(float)
        base = base.join(wide, on="score_id")
    if len(attrs):
        wa = attrs.pivot(index="sample_id", columns="name", values="value")
        wa = wa.astype(object).where(wa.notna(), None)
        wa.columns = ["attr_" + c for c in wa.columns]
        base = base.join(wa, on="sample_id")
        for c in wa.columns:
            base[c] = base[c].astype(object).where(base[c].notna(), None)
    return base.drop(columns=["score_id", "sample_id"]).sort_values("sample_key").reset_index(drop=True)


# --- what depends on what, and the one explicit delete ----------------------------------------------

KINDS = ("dataset", "release", "run")


@dataclass
class Dependents:
    """What a dataset revision, release revision or run carries with it.

    Attributes:
        kind, ref: what was asked about (``ref`` resolved to ``name@N`` or the run folder).
        runs: run folders that score it (for a run: itself).
        campaigns: names of the campaigns over those runs.
        n_items, n_assignments, n_ratings: campaign items, assignments and ratings of those campaigns.
        n_corrections: raters' corrected ground-truth masks of a dataset's samples
            (:class:`db.models.TruthVersion`; a run or release has none: corrections belong to the photo).
    """

    kind: str
    ref: str
    runs: list[str] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)
    n_items: int = 0
    n_assignments: int = 0
    n_ratings: int = 0
    n_corrections: int = 0

    def describe(self) -> str:
        """One line: what depends on it."""
        parts = [f"{len(self.runs)} run(s)" + (f" {self.runs[:5]}" if self.runs else "")]
        parts.append(f"{len(self.campaigns)} campaign(s)" + (f" {self.campaigns[:5]}" if self.campaigns else ""))
        parts.append(f"{self.n_ratings} rating(s)")
        if self.n_corrections:
            parts.append(f"{self.n_corrections} ground-truth correction(s)")
        return ", ".join(parts)


def _target(session: Any, kind: str, ref: str | int) -> tuple[Any, str, list[int]]:
    """The row, its display ref and the ids of the runs that depend on it."""
    if kind == "dataset":
        row = _resolve(session, Dataset, str(ref), "dataset")
        return row, f"{row.name}@{row.revision}", list(session.scalars(select(Run.id).where(Run.dataset_id == row.id)))
    if kind == "release":
        row = _resolve(session, Release, str(ref), "release")
        return row, f"{row.name}@{row.revision}", list(session.scalars(select(Run.id).where(Run.release_id == row.id)))
    if kind == "run":
        row = session.get(Run, ref) if isinstance(ref, int) else session.scalar(select(Run).where(Run.path == str(ref)))
        if row is None:
            raise KeyError(f"no run stored at {ref!r}")
        return row, row.path, [row.id]
    raise KeyError(f"kind must be one of {KINDS}, got {kind!r}")


def _campaign_ids(session: Any, run_ids: list[int]) -> list[int]:
    if not run_ids:
        return []
    return list(session.scalars(select(Campaign.id).where(or_(Campaign.run_a_id.in_(run_ids), Campaign.run_b_id.in_(run_ids)))))


def _dependents(session: Any, kind: str, ref: str | int) -> tuple[Any, Dependents, list[int], list[int]]:
    row, shown, run_ids = _target(session, kind, ref)
    camp_ids = _campaign_ids(session, run_ids)
    item_ids = list(session.scalars(select(CampaignItem.id).where(CampaignItem.campaign_id.in_(camp_ids)))) if camp_ids else []
    dep = Dependents(kind, shown)
    dep.runs = sorted(session.scalars(select(Run.path).where(Run.id.in_(run_ids)))) if run_ids else []
    dep.campaigns = sorted(session.scalars(select(Campaign.name).where(Campaign.id.in_(camp_ids)))) if camp_ids else []
    dep.n_items = len(item_ids)
    if item_ids:
        dep.n_assignments = session.scalar(select(func.count()).select_from(Assignment).where(Assignment.item_id.in_(item_ids)))
        dep.n_ratings = session.scalar(select(func.count()).select_from(Rating).where(Rating.item_id.in_(item_ids)))
    if kind == "dataset":
        dep.n_corrections = session.scalar(select(func.count()).select_from(TruthVersion).join(Sample, Sample.id == TruthVersion.sample_id)
                                           .where(Sample.dataset_id == row.id))
    return row, dep, run_ids, camp_ids


def dependents(engine: Engine, kind: str, ref: str | int) -> Dependents:
    """What depends on a ``dataset`` / ``release`` (``name`` or ``name@N``) or a ``run`` (folder or id).

    Raises:
        KeyError: nothing of that kind under ``ref`` (named).
    """
    with session_scope(engine) as session:
        return _dependents(session, kind, ref)[1]


class DeleteRefused(RuntimeError):
    """A delete that would remove ratings or ground-truth corrections without ``with_ratings`` (the
    message lists them)."""


def delete(engine: Engine, kind: str, ref: str | int, with_ratings: bool = False) -> Dependents:
    """Delete a dataset revision, release revision or run and everything that depends on it, in one
    transaction, in dependency order: rating revisions, ratings, assignments, campaign items, campaigns, runs (their
    scores and metric values), then the record itself (a dataset's samples and attributes with it).
    Files are never touched: run and build folders stay where they are.

    Args:
        with_ratings: allow deleting what raters made (ratings, and a dataset's ground-truth
            corrections); without it such a delete is refused.

    Returns:
        What was deleted.

    Raises:
        KeyError: nothing of that kind under ``ref``.
        DeleteRefused: ratings or corrections depend on it and ``with_ratings`` is False.
    """
    with session_scope(engine) as session:
        row, dep, run_ids, camp_ids = _dependents(session, kind, ref)
        if (dep.n_ratings or dep.n_corrections) and not with_ratings:
            raise DeleteRefused(f"{kind} {dep.ref} has {dep.describe()}; nothing deleted (allow deleting the ratings explicitly)")
        if camp_ids:
            items = select(CampaignItem.id).where(CampaignItem.campaign_id.in_(camp_ids))
            session.execute(sa_delete(RatingRevision).where(RatingRevision.rating_id.in_(select(Rating.id).where(Rating.item_id.in_(items)))))
            session.execute(sa_delete(Rating).where(Rating.item_id.in_(items)))
            session.execute(sa_delete(Assignment).where(Assignment.item_id.in_(items)))
            session.execute(sa_delete(CampaignItem).where(CampaignItem.campaign_id.in_(camp_ids)))
            session.execute(sa_delete(Campaign).where(Campaign.id.in_(camp_ids)))
        if run_ids:
            scores = select(Score.id).where(Score.run_id.in_(run_ids))
            session.execute(sa_delete(MetricValue).where(MetricValue.score_id.in_(scores)))
            session.execute(sa_delete(Score).where(Score.run_id.in_(run_ids)))
            session.execute(sa_delete(Run).where(Run.id.in_(run_ids)))
        if kind == "dataset":
            samples = select(Sample.id).where(Sample.dataset_id == row.id)
            session.execute(sa_delete(TruthVersion).where(TruthVersion.sample_id.in_(samples)))
            session.execute(sa_delete(SampleAttribute).where(SampleAttribute.sample_id.in_(samples)))
            session.execute(sa_delete(Sample).where(Sample.dataset_id == row.id))
            session.execute(sa_delete(DatasetAttribute).where(DatasetAttribute.dataset_id == row.id))
            session.execute(sa_delete(Dataset).where(Dataset.id == row.id))
        elif kind == "release":
            session.execute(sa_delete(Release).where(Release.id == row.id))
        return dep


# --- corrected ground truth -------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthVersionInfo:
    """A corrected ground-truth mask (:class:`db.models.TruthVersion`) as readers need it.

    Attributes:
        sample_key: the sample.
        version: 2, 3, ... (the dataset's own mask file is version 1).
        rater: who corrected it; created_at: when (ISO 8601, UTC).
        campaign: the correction campaign; base: what the rater started from.
        snapped: the edited edges were snapped to the photo's edges.
        mask_png: the mask, an 8-bit PNG (0 / 255) at the photo's size.
    """

    sample_key: str
    version: int
    rater: str
    created_at: str
    campaign: str | None
    base: str
    snapped: bool
    mask_png: bytes


def truth_versions(engine: Engine, dataset: str, newest_only: bool = True) -> dict[str, list[TruthVersionInfo]]:
    """The corrected ground truth of a dataset revision (``name`` or ``name@N``), by sample key.

    Args:
        newest_only: only each sample's newest version (a one-item list); else every version,
            oldest first.

    Returns:
        ``{sample_key: [TruthVersionInfo, ...]}``; samples without a correction are absent.

    Raises:
        KeyError: no such dataset.
    """
    with session_scope(engine) as session:
        ds = _resolve(session, Dataset, dataset, "dataset")
        rows = session.execute(
            select(Sample.sample_key, TruthVersion, Rater.name).join(Sample, Sample.id == TruthVersion.sample_id)
            .join(Rater, Rater.id == TruthVersion.rater_id).where(Sample.dataset_id == ds.id)
            .order_by(Sample.sample_key, TruthVersion.version)
        ).all()
        out: dict[str, list[TruthVersionInfo]] = {}
        for key, tv, rater in rows:
            created = tv.created_at if tv.created_at.tzinfo else tv.created_at.replace(tzinfo=timezone.utc)
            info = TruthVersionInfo(key, tv.version, rater, created.isoformat(), tv.campaign, tv.base, tv.snapped, bytes(tv.mask_png))
            if newest_only:
                out[key] = [info]
            else:
                out.setdefault(key, []).append(info)
        return out
