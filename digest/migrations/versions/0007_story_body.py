"""each story's plain body text, for related stories

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "" for the stories collected before: they get their body on their next collect.
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("body", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # Not a batch: on SQLite a batch drops a column by copying the table and dropping the
    # old one, which edition_picks' foreign key to stories refuses. SQLite drops a column
    # in place since 3.35 (2021), PostgreSQL always has.
    op.drop_column("stories", "body")
