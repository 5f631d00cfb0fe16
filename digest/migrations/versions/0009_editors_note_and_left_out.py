"""the editors' note (edition_overrides.note, editions.note) and why each left-out
candidate is out (editions.left_out)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Editions drafted before have no note and no reasons; their next draft fills them.
    # Plain ADD COLUMN (no batch copy): SQLite could not drop `editions` to copy it, as
    # edition_picks and sends point at it.
    op.add_column(
        "edition_overrides", sa.Column("note", sa.Text(), nullable=False, server_default="")
    )
    op.add_column("editions", sa.Column("note", sa.Text(), nullable=False, server_default=""))
    op.add_column("editions", sa.Column("left_out", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    # Plain DROP COLUMN too (SQLite 3.35 and later), for the same reason.
    op.drop_column("editions", "left_out")
    op.drop_column("editions", "note")
    op.drop_column("edition_overrides", "note")
