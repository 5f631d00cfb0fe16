"""related stories: day counts of the index (term_days, index_days), two covering
indexes for the refresh; index again

Stories now post their 60 heaviest terms, not all 160, and how many stories posted a
term is kept per day (term_days) beside how many were indexed (index_days), so that a
window's document frequencies are a sum over its days. The term index is derived from
the stories' text: emptied here, every story in a window is indexed again (and counted)
the next time an edition or `digest related` asks (related.refresh).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM story_terms")
    op.execute("DELETE FROM story_index")
    op.create_table(
        "term_days",
        sa.Column("term", sa.String(80), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("stories", sa.Integer(), nullable=False),
    )
    op.create_table(
        "index_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("stories", sa.Integer(), nullable=False),
    )
    # related.refresh asks which of a window's stories are not indexed or changed since:
    # answered from these two indexes, without reading the stories' rows or the vectors.
    op.create_index(
        "ix_stories_published_collected", "stories", ["published_at", "collected_at", "id"]
    )
    op.create_index(
        "ix_story_index_fresh", "story_index", ["story_id", "indexed_at", "published_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_story_index_fresh", table_name="story_index")
    op.drop_index("ix_stories_published_collected", table_name="stories")
    op.drop_table("index_days")
    op.drop_table("term_days")
    # The older code indexes again what has no terms: empty is right for it too.
    op.execute("DELETE FROM story_terms")
    op.execute("DELETE FROM story_index")
