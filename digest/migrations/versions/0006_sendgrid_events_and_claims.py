"""SendGrid's delivery events, which settle batches left in doubt; each claim's token,
so a claim whose commit went unanswered can be found again; who settled a batch

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sendgrid_events",
        sa.Column("sg_event_id", sa.String(length=100), nullable=False),
        sa.Column("edition", sa.String(length=10), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sg_event_id"),
    )
    op.create_index("ix_sendgrid_events_batch", "sendgrid_events", ["edition", "batch"])
    with op.batch_alter_table("send_batches") as batch:
        batch.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("settled_by", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_batches") as batch:
        batch.drop_column("settled_by")
        batch.drop_column("claim")
    op.drop_index("ix_sendgrid_events_batch", table_name="sendgrid_events")
    op.drop_table("sendgrid_events")
