"""the random key of each rendered copy's substitution tokens (digest.tokens)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "" for the copies rendered before: their tokens have no key and are filled as before.
    with op.batch_alter_table("renders") as batch:
        batch.add_column(
            sa.Column("token_key", sa.String(length=32), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("renders") as batch:
        batch.drop_column("token_key")
