"""liftlab's one SQL catalog.

Every pillar (``synth``, ``evalhub``, ``fairness``, ``raters``) reads and writes the same catalog so
that datasets, samples, attributes, scores and ratings can be joined in SQL.

The catalog is a SQLite file by default (``./liftlab.db``, WAL journal, 30 s busy timeout) and
PostgreSQL when ``DATABASE_URL`` is set (``postgresql://...`` is accepted and routed to psycopg 3).
The schema is owned by Alembic migrations in :mod:`db.migrations`; :func:`connect` upgrades the
catalog to the newest revision before handing out an engine.
"""

from db.engine import DEFAULT_SQLITE_PATH, connect, database_url, session_scope, upgrade
from db.models import (
    Assignment, Base, Campaign, CampaignItem, Dataset, DatasetAttribute, Rater, RaterSession, Rating, Release, Run, Sample,
    SampleAttribute, Score,
)

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "Assignment",
    "Campaign",
    "CampaignItem",
    "Rater",
    "RaterSession",
    "Rating",
    "Base",
    "Dataset",
    "DatasetAttribute",
    "Release",
    "Run",
    "Score",
    "Sample",
    "SampleAttribute",
    "connect",
    "database_url",
    "session_scope",
    "upgrade",
]
