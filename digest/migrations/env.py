"""Alembic environment: migrations run on the connection the store hands in."""

from alembic import context

# These define sendgrid_events, send_rate_buckets and subject_tests on the same metadata.
import digest.store.events
import digest.store.rates
import digest.store.subjects  # noqa: F401
from digest.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when run through the alembic CLI
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
