"""Alembic environment: runs migrations on the connection handed over by :func:`db.upgrade`."""

from alembic import context

from db.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline use from the alembic CLI
    from db.engine import create_catalog_engine

    with create_catalog_engine().begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
