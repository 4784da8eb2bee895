"""SQLAlchemy 2.x models of the catalog.

Revision ``0001`` holds the data side: datasets, their samples and every sample attribute. Later
revisions add releases, runs, per-sample scores, campaigns, raters and ratings, all keyed on
``samples.id`` so every pillar can join them. Revision ``0004`` makes the catalog the one store:

* datasets and releases are versioned (``revision``, unique with ``name``; ``content_hash``
  identifies identical content), never replaced;
* per-sample metric values live in ``metric_values`` (one row per score and metric, named by the
  registry :mod:`evalhub.registry`), so a new metric needs no migration;
* what people made (runs, campaigns, their items, assignments, ratings) is never removed by a
  cascade: those foreign keys are ``ON DELETE RESTRICT``; deleting is the explicit
  :func:`db.catalog.delete` in dependency order. Parts of one record (a dataset's samples and
  attributes, a run's scores and metric values, a rater's login sessions) still go with it.

Revision ``0006`` adds ``truth_versions``: raters' corrections of a sample's ground-truth mask, each
a new version (the dataset's own mask file is version 1), with who made it and when.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""


class Dataset(Base):
    """A set of samples: a ``synth`` build (``kind='synth'``) or an imported real set.

    ``(name, revision)`` is unique: registering different content under a name adds revision
    ``n + 1`` and keeps every earlier one with what depends on it. ``content_hash`` (SHA-256 of the
    sample records, attributes and recipe) makes registering identical content a no-op.
    ``targets`` holds what a ``synth`` build was asked for (negatives share, split shares, balance
    quota cells with their sample counts) so audits read the build's own targets back.
    """

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "revision", name="uq_dataset_name_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    targets: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    root: Mapped[str] = mapped_column(Text, nullable=False)
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    n_samples: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_utcnow, nullable=True)

    samples: Mapped[list[Sample]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )
    attributes: Mapped[list[DatasetAttribute]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )


class DatasetAttribute(Base):
    """An attribute column of a dataset with its provenance.

    ``provenance`` is one of ``annotated``, ``self-reported``, ``estimated`` (from a metadata table)
    or ``derived`` (computed from the ground-truth mask by liftlab).
    """

    __tablename__ = "dataset_attributes"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_dataset_attribute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    provenance: Mapped[str] = mapped_column(String(32), nullable=False)

    dataset: Mapped[Dataset] = relationship(back_populates="attributes")


class Sample(Base):
    """One image of a dataset with its ground truth files (paths relative to ``Dataset.root``)."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_id", "sample_key", name="uq_sample_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    sample_key: Mapped[str] = mapped_column(String(200), nullable=False)
    split: Mapped[str | None] = mapped_column(String(16), nullable=True)
    image_path: Mapped[str] = mapped_column(Text, nullable=False)
    mask_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    alpha_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    trimap_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    has_subject: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    n_subjects: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)

    dataset: Mapped[Dataset] = relationship(back_populates="samples")
    attributes: Mapped[list[SampleAttribute]] = relationship(
        back_populates="sample", cascade="all, delete-orphan", passive_deletes=True
    )


class SampleAttribute(Base):
    """One attribute value of a sample (``name``/``value`` as text; ``None`` for a missing value)."""

    __tablename__ = "sample_attributes"
    __table_args__ = (UniqueConstraint("sample_id", "name", name="uq_sample_attribute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)

    sample: Mapped[Sample] = relationship(back_populates="attributes")


class Release(Base):
    """A model release: an ONNX model with its manifest (``kind='onnx'``) or a predictions folder
    (``kind='predictions'``). ``confidence_proxy`` is True when the release has no confidence output
    and the documented proxy stands in for it. Versioned like :class:`Dataset`: ``(name, revision)``
    is unique and ``content_hash`` covers the model file (or the predictions listing), manifest and
    threshold; ``version`` is the release's own label from its manifest."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("name", "revision", name="uq_release_name_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    confidence_proxy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_utcnow, nullable=True)


class Run(Base):
    """One scoring of a release revision on a dataset revision; ``path`` is its run folder (unique:
    a folder holds one run). ``summary`` is the whole run summary (means with CIs, gate
    calibration, slices, quarantine, warnings); the run folder's files are exports of it."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="RESTRICT"), nullable=False, index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), nullable=False, index=True)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    n_scored: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_utcnow, nullable=True)


class Score(Base):
    """One scored sample of a run: the gate's inputs; its metric values are :class:`MetricValue` rows."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("run_id", "sample_id", name="uq_score_run_sample"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), nullable=False, index=True)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    accepted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    acceptable: Mapped[bool] = mapped_column(Boolean, nullable=False)
    prediction_resized: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class MetricValue(Base):
    """One per-image metric value of a scored sample (``metric`` is a registry name; NULL where the
    metric is undefined: negatives, no alpha matte)."""

    __tablename__ = "metric_values"
    __table_args__ = (UniqueConstraint("score_id", "metric", name="uq_metric_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    score_id: Mapped[int] = mapped_column(ForeignKey("scores.id", ondelete="CASCADE"), nullable=False, index=True)
    metric: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Rater(Base):
    """A person who rates (``role='rater'``) or runs campaigns (``role='admin'``).

    ``password_hash`` is an argon2id hash (argon2-cffi); ``active`` False disables the login and
    every open session.
    """

    __tablename__ = "raters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_utcnow, nullable=True)


class RaterSession(Base):
    """A login session: the SHA-256 of its bearer token, its rater and its expiry (UTC)."""

    __tablename__ = "rater_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Campaign(Base):
    """A rating campaign over one run (``kind='single'``) or two runs of the same dataset
    (``kind='ab'``, blind A/B); ``settings`` keeps how its items were drawn; ``closed_at``: an admin
    closed it (its open items left the queues; its ratings stay)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    run_a_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), nullable=False)
    run_b_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), nullable=True)
    raters_per_item: Mapped[int] = mapped_column(Integer, nullable=False)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_utcnow, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CampaignItem(Base):
    """One photo of a campaign. For A/B items ``left_run_id`` is the run shown on the left (sides
    randomised per item). Gold items carry the admin's reference answer in ``gold_answer``."""

    __tablename__ = "campaign_items"
    __table_args__ = (UniqueConstraint("campaign_id", "sample_id", name="uq_campaign_sample"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="RESTRICT"), nullable=False, index=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="RESTRICT"), nullable=False, index=True)
    left_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), nullable=True)
    stratum: Mapped[str | None] = mapped_column(String(200), nullable=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    gold_answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Assignment(Base):
    """One item for one rater, at ``position`` in that rater's (randomised) queue. Unique per
    (item, rater): nobody rates an item twice. ``problem``: the rater skipped the item and said
    why (``problem_at`` when); it is then done without a rating."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "rater_id", name="uq_assignment_item_rater"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="RESTRICT"), nullable=False, index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="RESTRICT"), nullable=False, index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    done: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    problem_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Rating(Base):
    """The answer to one assignment (unique per assignment: a repeated submit stores nothing new).

    Single extractions: ``overall`` and ``edge`` in 1-5, ``completeness`` (whole/partly/no),
    ``background_leak`` (none/minor/major), ``artifacts`` (list of holes/halo/missing_thin/
    extra_object), ``would_use``. A/B: ``choice`` (A/B/tie as shown), ``winner_run_id`` (None for a
    tie) and ``reasons``. ``seconds``: time on task, from showing the item to the submit.
    """

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("assignment_id", name="uq_rating_assignment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="RESTRICT"), nullable=False)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="RESTRICT"), nullable=False, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="RESTRICT"), nullable=False, index=True)
    overall: Mapped[int | None] = mapped_column(Integer)
    edge: Mapped[int | None] = mapped_column(Integer)
    completeness: Mapped[str | None] = mapped_column(String(16))
    background_leak: Mapped[str | None] = mapped_column(String(16))
    artifacts: Mapped[list[str] | None] = mapped_column(JSON)
    would_use: Mapped[bool | None] = mapped_column(Boolean)
    choice: Mapped[str | None] = mapped_column(String(8))
    winner_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), nullable=True)
    reasons: Mapped[list[str] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RatingRevision(Base):
    """An earlier version of a rating the rater edited: the answer fields as they were
    (``answer``, JSON) and when they were replaced. A rating row always holds the newest answer;
    its revisions keep every earlier one, so an edit never loses what a person said."""

    __tablename__ = "rating_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="RESTRICT"), nullable=False, index=True)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TruthVersion(Base):
    """A corrected ground-truth mask of one sample: version ``n >= 2`` (the dataset's own mask file
    is version 1), never replaced; a new correction adds ``n + 1``.

    ``mask_png``: the mask as an 8-bit PNG (0 background, 255 subject) at the photo's size
    (``width`` x ``height``). ``rater_id`` and ``created_at``: who made it and when. ``campaign``,
    ``assignment_id``: the correction campaign and assignment it came from (kept as values, so
    deleting that campaign's run keeps the correction). ``base``: what the rater started from
    (``prediction`` of the campaign's run, or ``truth vN``); ``strokes``: the brush strokes as
    drawn, in photo pixels; ``snapped``: the edited edges were snapped to the photo's edges
    (:func:`raters.corrections.snap_to_edges`).
    """

    __tablename__ = "truth_versions"
    __table_args__ = (UniqueConstraint("sample_id", "version", name="uq_truth_version"),
                      UniqueConstraint("assignment_id", name="uq_truth_version_assignment"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="RESTRICT"), nullable=False, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    mask_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="RESTRICT"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    campaign: Mapped[str | None] = mapped_column(String(200), nullable=True)
    assignment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base: Mapped[str] = mapped_column(String(64), nullable=False)
    strokes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    snapped: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
