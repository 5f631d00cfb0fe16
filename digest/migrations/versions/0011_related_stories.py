"""related stories: the term index, related picks under a story, editors' related changes

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "story_index",
        sa.Column("story_id", sa.Integer(), sa.ForeignKey("stories.id"), primary_key=True),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
    )
    op.create_index("ix_story_index_published_at", "story_index", ["published_at"])
    # Primary key (term, published_at, story_id): a term's postings in a window are
    # one range of the key, on SQLite and PostgreSQL alike.
    op.create_table(
        "story_terms",
        sa.Column("term", sa.String(80), primary_key=True),
        sa.Column("published_at", sa.DateTime(), primary_key=True),
        sa.Column("story_id", sa.Integer(), sa.ForeignKey("stories.id"), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("edition_picks") as batch:
        batch.add_column(
            sa.Column(
                "under_story_id",
                sa.Integer(),
                sa.ForeignKey("stories.id", name="fk_edition_picks_under_story_id"),
                nullable=True,
            )
        )
    with op.batch_alter_table("edition_overrides") as batch:
        batch.add_column(sa.Column("related_added", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("related_dropped", sa.Text(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("edition_overrides") as batch:
        batch.drop_column("related_dropped")
        batch.drop_column("related_added")
    with op.batch_alter_table("edition_picks") as batch:
        # The key first: on SQLite a batch copy would keep it, naming a column gone.
        batch.drop_constraint("fk_edition_picks_under_story_id", type_="foreignkey")
        batch.drop_column("under_story_id")
    op.drop_table("story_terms")
    op.drop_index("ix_story_index_published_at", table_name="story_index")
    op.drop_table("story_index")
