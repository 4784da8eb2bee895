"""Engine creation, SQLite pragmas and Alembic upgrades for the catalog."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_SQLITE_PATH = "liftlab.db"
"""Catalog file used when neither an explicit URL nor ``DATABASE_URL`` is given (relative to cwd)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000

_MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(url: str | None = None) -> str:
    """Resolve the catalog URL.

    Order: the explicit ``url``, then the ``DATABASE_URL`` environment variable, then a SQLite file
    ``./liftlab.db``. ``postgresql://`` and ``postgres://`` URLs are rewritten to the psycopg 3 driver
    (``postgresql+psycopg://``).

    Args:
        url: an SQLAlchemy URL, or None.

    Returns:
        The SQLAlchemy URL string to connect to.
    """
    resolved = url or os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
    for prefix in ("postgres://", "postgresql://"):
        if resolved.startswith(prefix):
            resolved = "postgresql+psycopg://" + resolved[len(prefix) :]
    return resolved


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - exercised via connect
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_catalog_engine(url: str | None = None) -> Engine:
    """Create an engine on the catalog without migrating it.

    SQLite connections get ``journal_mode=WAL``, ``busy_timeout=30000`` and ``foreign_keys=ON``.
    """
    resolved = database_url(url)
    if resolved.startswith("sqlite"):
        engine = create_engine(resolved, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        db_path = engine.url.database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine = create_engine(resolved, pool_pre_ping=True)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations in :mod:`db.migrations` up to ``revision`` on ``engine``.

    On SQLite, ``PRAGMA foreign_keys`` is off while the migrations run (batch migrations rebuild a
    table by copy, drop and rename, and a ``DROP`` with foreign keys on would cascade into the rows
    that reference it) and ``PRAGMA foreign_key_check`` must come back empty afterwards.

    Raises:
        RuntimeError: the migrated SQLite catalog violates a foreign key (rows named).
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
            if sqlite:
                bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.commit()
                if bad:
                    raise RuntimeError(f"catalog migration left rows that violate foreign keys: {bad[:10]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def connect(url: str | None = None, migrate: bool = True) -> Engine:
    """Return an engine on the catalog, upgraded to the newest schema revision.

    Args:
        url: SQLAlchemy URL; see :func:`database_url` for the defaults.
        migrate: run ``alembic upgrade head`` first (idempotent).

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    engine = create_catalog_engine(url)
    if migrate:
        upgrade(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transactional ORM session: commits on success, rolls back on any exception."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
