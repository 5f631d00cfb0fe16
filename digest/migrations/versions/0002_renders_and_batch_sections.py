"""renders, and the section preference of each send batch

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renders",
        sa.Column("edition", sa.String(length=10), nullable=False),
        sa.Column("variant", sa.String(length=2000), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("preheader", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["edition"], ["editions.name"]),
        sa.PrimaryKeyConstraint("edition", "variant"),
    )
    with op.batch_alter_table("send_batches") as batch:
        batch.add_column(sa.Column("sections", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("send_batches") as batch:
        batch.drop_column("sections")
    op.drop_table("renders")
