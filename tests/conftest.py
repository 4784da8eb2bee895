"""Shared fixtures: real data locations, a recipe factory, SQLite and PostgreSQL catalogs."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = (ROOT.parent / "shared" / "datasets").resolve()
ECSSD = DATASETS / "ecssd"
CCP = DATASETS / "ccp"
LEMUR = DATASETS / "lemur"
PG_BASE = os.environ.get("LIFTLAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config, items):
    if not ECSSD.is_dir():
        raise pytest.UsageError(f"the real test data is missing: {ECSSD} (see README, Data)")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One preparation cache for the session (results never depend on whether it is warm)."""
    return tmp_path_factory.mktemp("prep-cache")


def ecssd_recipe(cache_dir: Path, **overrides) -> dict:
    """A small, fast recipe on real ECSSD photos (128x128 output, 16 subjects, 24 backgrounds)."""
    doc = {
        "name": "ecssd-small",
        "seed": 11,
        "n_samples": 12,
        "output": {"size": [128, 128]},
        "cache_dir": str(cache_dir),
        "sources": {
            "foregrounds": [
                {"name": "ecssd", "kind": "image_mask", "images": str(ECSSD / "images"), "masks": str(ECSSD / "masks"), "limit": 16}
            ],
            "backgrounds": [
                {"name": "ecssd-bg", "kind": "masked", "images": str(ECSSD / "images"), "masks": str(ECSSD / "masks"), "limit": 24,
                 "max_inpainted_fraction": 0.1, "crop_zoom": [0.6, 1.0]}
            ],
        },
        "splits": {"train": 0.6, "val": 0.2, "test": 0.2},
        "negatives": 0.25,
        "subjects_per_image": {1: 0.7, 2: 0.3},
        "occlusion": {"probability": 0.3},
        "harmonization": {"method": "illumination", "strength": [0.3, 0.7], "light_wrap": {"enabled": True}, "match_noise": True, "match_blur": True},
        "camera": {"defocus": {"probability": 0.5}, "sensor_noise": {"probability": 0.5}, "shadow": {"probability": 0.3}},
        "augment": {"color_jitter": {"brightness": 0.1, "hue_deg": 3}, "noise": {"probability": 0.5, "sigma": [1, 3]}, "blur": {"probability": 0.3}},
    }
    for key, value in overrides.items():
        doc[key] = value
    return doc


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=3):
            return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc)


@pytest.fixture
def pg_url():
    """A PostgreSQL catalog in a fresh schema of database ``test``, dropped afterwards.

    Skipped when PostgreSQL is unreachable, unless ``LIFTLAB_REQUIRE_POSTGRES=1`` (set by CI),
    where that is a failure.
    """
    reason = _pg_available()
    if reason is not None:
        if os.environ.get("LIFTLAB_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required but unreachable: {reason}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {reason}")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path):
    """The catalog URL on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("pg_url")
