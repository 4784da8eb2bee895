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
"""How long a SQLite catalog waits for another writer's lock (``LIFTLAB_SQLITE_BUSY_MS`` overrides)."""


def _busy_ms() -> int:
    return int(os.environ.get("LIFTLAB_SQLITE_BUSY_MS", SQLITE_BUSY_TIMEOUT_MS))

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
    cursor.execute(f"PRAGMA busy_timeout={_busy_ms()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_catalog_engine(url: str | None = None) -> Engine:
    """Create an engine on the catalog without migrating it.

    SQLite connections get ``journal_mode=WAL``, ``busy_timeout=30000`` and ``foreign_keys=ON``.
    PostgreSQL gets a pool of 10 connections plus 20 on demand, and a 60 s wait for one.
    """
    resolved = database_url(url)
    if resolved.startswith("sqlite"):
        engine = create_engine(resolved, connect_args={"timeout": _busy_ms() / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        db_path = engine.url.database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    else:
        # a rater app serves every browser session from its own thread: room for 30 connections
        # at once (10 kept open) before a request waits, and 60 s before a wait fails
        engine = create_engine(resolved, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=60)
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


class CatalogError(RuntimeError):
    """A catalog that cannot be used: unreachable, malformed URL, locked, read-only, corrupt or of a
    newer revision. The message is one line naming the catalog URL (password hidden)."""


_CURRENT_URL: str | None = None


def shown_url(url: str) -> str:
    """``url`` with its password hidden (as given when it does not parse)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - shown as given
        return url


def current_url() -> str:
    """The catalog URL this process connected to last (password hidden), for error messages."""
    return _CURRENT_URL or shown_url(database_url(None))


def catalog_error_line(exc: BaseException, url: str) -> str | None:
    """One line for a catalog exception (None when ``exc`` is not one), naming ``url`` and what to do."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

    def first(x: object) -> str:
        return next((ln.strip() for ln in str(x).splitlines() if ln.strip()), "")

    if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
        return f"catalog {url} was migrated by a newer liftlab ({first(exc)}); upgrade liftlab before using it"
    if isinstance(exc, ArgumentError):
        return f"catalog URL {url!r} is not a database URL ({first(exc)})"
    if isinstance(exc, (OperationalError, DatabaseError)):
        orig = first(getattr(exc, "orig", None) or exc)
        low = orig.lower()
        if "locked" in low:
            hint = "another process holds it past the busy timeout; try again when it is done"
        elif "readonly" in low or "read-only" in low:
            hint = "it is read-only; use a writable catalog (--database-url)"
        elif "not a database" in low or "malformed" in low:
            hint = "the file is not a healthy SQLite database; restore it from a backup or use another catalog"
        elif "unable to open" in low:
            hint = "its folder cannot be written or does not exist"
        elif "connect" in low or "connection" in low or "resolve" in low:
            hint = "the database server cannot be reached; check DATABASE_URL / --database-url"
        else:
            hint = "check the catalog"
        return f"catalog {url}: {orig} ({hint})"
    return None


def connect(url: str | None = None, migrate: bool = True) -> Engine:
    """Return an engine on the catalog, upgraded to the newest schema revision.

    Args:
        url: SQLAlchemy URL; see :func:`database_url` for the defaults.
        migrate: run ``alembic upgrade head`` first (idempotent).

    Raises:
        CatalogError: the catalog cannot be used (one line naming the URL and the reason).
    """
    global _CURRENT_URL
    resolved = database_url(url)
    _CURRENT_URL = shown_url(resolved)
    try:
        engine = create_catalog_engine(url)
        if migrate:
            upgrade(engine)
    except CatalogError:
        raise
    except Exception as exc:
        line = catalog_error_line(exc, _CURRENT_URL)
        if line is None and isinstance(exc, OSError):
            line = f"catalog {_CURRENT_URL}: {exc.strerror or exc}"
        if line is None:
            raise
        raise CatalogError(line) from exc
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
