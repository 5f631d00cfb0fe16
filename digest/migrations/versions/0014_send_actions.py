"""send actions: who started, paused, resumed or resent a send, and what the ledger said

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
# 0012 is being written on another branch (SendGrid's events); the merge puts this after it.
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("edition", sa.String(10), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("who", sa.Text(), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
    )
    op.create_index("ix_send_actions_edition", "send_actions", ["edition"])


def downgrade() -> None:
    op.drop_index("ix_send_actions_edition", table_name="send_actions")
    op.drop_table("send_actions")
