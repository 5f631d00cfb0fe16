"""every provider event kept (opens, clicks, complaints, ...), tied to the story a click
was on; first-party clicks in the same table

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sendgrid_events") as batch:
        # A first-party click names no batch, and no reader unless per-reader
        # tracking is on: both may now be unknown.
        batch.alter_column("batch", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=True)
        batch.add_column(
            sa.Column("source", sa.String(length=20), nullable=False, server_default="sendgrid")
        )
        batch.add_column(sa.Column("slot", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("position", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("story_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("url", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("machine_open", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("detail", sa.String(length=200), nullable=True))
    # The report counts an edition's readers by kind of event from this index alone
    # (store/readership.py): every column its counts read is in it.
    op.create_index(
        "ix_sendgrid_events_kind",
        "sendgrid_events",
        ["edition", "event", "email", "machine_open"],
    )


def downgrade() -> None:
    op.drop_index("ix_sendgrid_events_kind", table_name="sendgrid_events")
    # Events 0011 could not hold go: first-party clicks and anything without a reader.
    op.execute("DELETE FROM sendgrid_events WHERE batch IS NULL OR email IS NULL")
    with op.batch_alter_table("sendgrid_events") as batch:
        batch.drop_column("detail")
        batch.drop_column("machine_open")
        batch.drop_column("url")
        batch.drop_column("story_id")
        batch.drop_column("position")
        batch.drop_column("slot")
        batch.drop_column("source")
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
        batch.alter_column("batch", existing_type=sa.Integer(), nullable=False)
