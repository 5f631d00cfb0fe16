"""subject tests: the subjects an editor gives an edition, and the subject of each batch

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_tests",
        sa.Column("edition", sa.String(10), primary_key=True),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("decide_at", sa.DateTime(), nullable=True),
        sa.Column("winner", sa.Integer(), nullable=True),
        sa.Column("test_batches", sa.Integer(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("send_batches") as batch:
        batch.add_column(sa.Column("variant", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_batches") as batch:
        batch.drop_column("variant")
    op.drop_table("subject_tests")
