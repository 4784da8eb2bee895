"""The catalog on SQLite and PostgreSQL: migrations, registration, re-registration, queries."""

import pytest
from sqlalchemy import inspect, select, text

import db
from db.catalog import SampleRecord, dataset_summary, register_dataset, sample_attributes
from db.models import DatasetAttribute, Sample, SampleAttribute


def _samples():
    return [
        SampleRecord("s1", "images/s1.jpg", "masks/s1.png", split="train", attributes={"skin_tone": "dark", "touches_border": True, "area": 0.25}),
        SampleRecord("s2", "images/s2.jpg", "masks/s2.png", split="test", has_subject=False, n_subjects=0, attributes={"skin_tone": None}),
    ]


def test_migrations_create_the_schema(catalog_url):
    engine = db.connect(catalog_url)
    tables = set(inspect(engine).get_table_names())
    assert {"datasets", "dataset_attributes", "samples", "sample_attributes", "releases", "runs", "scores", "raters",
            "rater_sessions", "campaigns", "campaign_items", "assignments", "ratings", "metric_values", "rating_revisions",
            "truth_versions", "alembic_version"} <= tables
    with engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0006"
    db.connect(catalog_url)  # idempotent


def test_migrations_match_the_models(catalog_url):
    """Alembic's autogenerate finds no difference between the migrated schema and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.connect(catalog_url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), db.Base.metadata)
    assert diff == []


def test_register_roundtrip_and_revisions(catalog_url):
    engine = db.connect(catalog_url)
    reg = register_dataset(engine, "demo", "synth", "/data/demo", _samples(), provenance={"skin_tone": "self-reported", "touches_border": "derived"})
    assert (reg.revision, reg.created) == (1, True)
    assert sample_attributes(engine, "demo") == {
        "s1": {"area": "0.25", "skin_tone": "dark", "touches_border": "true"},
        "s2": {"skin_tone": None},
    }
    with db.session_scope(engine) as s:
        prov = dict(s.execute(select(DatasetAttribute.name, DatasetAttribute.provenance).where(DatasetAttribute.dataset_id == reg.id)).all())
        assert prov == {"area": "annotated", "skin_tone": "self-reported", "touches_border": "derived"}
        neg = s.scalar(select(Sample).where(Sample.sample_key == "s2"))
        assert neg.has_subject is False and neg.n_subjects == 0 and neg.split == "test"
    # identical content again: a no-op (same row, nothing written)
    again = register_dataset(engine, "demo", "synth", "/data/demo", _samples(), provenance={"skin_tone": "self-reported", "touches_border": "derived"})
    assert (again.id, again.revision, again.created) == (reg.id, 1, False)
    # different content: revision 2, and revision 1 stays whole
    new = register_dataset(engine, "demo", "synth", "/data/demo", _samples()[:1])
    assert (new.revision, new.created) == (2, True) and new.id != reg.id
    assert dataset_summary(engine) == [{"id": new.id, "name": "demo", "revision": 2, "earlier_revisions": 1, "kind": "synth",
                                        "root": "/data/demo", "n_samples": 1}]
    assert sample_attributes(engine, "demo") == {"s1": {"area": "0.25", "skin_tone": "dark", "touches_border": "true"}}
    assert sample_attributes(engine, "demo@1")["s2"] == {"skin_tone": None}
    with db.session_scope(engine) as s:
        assert s.scalar(select(text("count(*)")).select_from(SampleAttribute)) == 4 + 3
    with pytest.raises(KeyError, match=r"'demo' has no revision 3 \(revisions: \[1, 2\]\)"):
        sample_attributes(engine, "demo@3")


def test_bad_registrations_name_the_problem(catalog_url):
    engine = db.connect(catalog_url)
    with pytest.raises(ValueError, match=r"duplicate sample keys \['s1'\]"):
        register_dataset(engine, "d", "synth", "/", [SampleRecord("s1", "a"), SampleRecord("s1", "b")])
    with pytest.raises(ValueError, match="attribute 'x' has provenance 'guessed'"):
        register_dataset(engine, "d", "synth", "/", [SampleRecord("s1", "a", attributes={"x": 1})], provenance={"x": "guessed"})
    with pytest.raises(KeyError, match="no dataset named 'nope'"):
        sample_attributes(engine, "nope")


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url):
    engine = db.connect(sqlite_url)
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_database_url_resolution(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert db.database_url() == "sqlite:///liftlab.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/x")
    assert db.database_url() == "postgresql+psycopg://u@h:5432/x"
    assert db.database_url("sqlite:///other.db") == "sqlite:///other.db"
