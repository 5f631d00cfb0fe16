"""The related-stories index: each story's weighted terms, and the postings of a term.

The story_index and story_terms tables. digest.related decides what the terms are and
how they are scored; this module only keeps them and reads them back, by window
(published_at), in an order that does not depend on the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import Float, String, column, func, or_, select, values

from digest.store.tables import Aggregate, now, stories, story_index, story_terms

#: Terms per IN (...) list: well under SQLite's and psycopg's parameter limits.
_CHUNK = 500


class RelatedIndex(Aggregate):
    """The queries of the related-stories index: `store.related`."""

    def stale_story_ids(self, start: datetime, end: datetime) -> list[int]:
        """Stories published in [start, end) that have no terms yet, or were collected
        again (their text may have changed) since their terms were made."""
        query = (
            select(stories.c.id)
            .select_from(stories.outerjoin(story_index, story_index.c.story_id == stories.c.id))
            .where(stories.c.published_at >= start, stories.c.published_at < end)
            .where(
                or_(
                    story_index.c.story_id.is_(None),
                    story_index.c.indexed_at < stories.c.collected_at,
                    story_index.c.published_at != stories.c.published_at,
                )
            )
            .order_by(stories.c.id)
        )
        with self.begin() as conn:
            return list(conn.scalars(query))

    def unindexed_ids(self, ids: Iterable[int]) -> list[int]:
        """Of these stories, the ones with no terms yet or stale ones (as stale_story_ids)."""
        wanted = sorted(set(ids))
        found: list[int] = []
        with self.begin() as conn:
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                query = (
                    select(stories.c.id)
                    .select_from(
                        stories.outerjoin(story_index, story_index.c.story_id == stories.c.id)
                    )
                    .where(stories.c.id.in_(part))
                    .where(
                        or_(
                            story_index.c.story_id.is_(None),
                            story_index.c.indexed_at < stories.c.collected_at,
                            story_index.c.published_at != stories.c.published_at,
                        )
                    )
                )
                found.extend(conn.scalars(query))
        return sorted(found)

    def save_terms(self, entries: Iterable[tuple[int, datetime, Mapping[str, float]]]) -> int:
        """Replace the terms of these stories: (story id, published_at, {term: weight})."""
        rows = list(entries)
        if not rows:
            return 0
        at = now()
        with self.begin() as conn:
            ids = [story_id for story_id, _, _ in rows]
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                conn.execute(story_terms.delete().where(story_terms.c.story_id.in_(part)))
                conn.execute(story_index.delete().where(story_index.c.story_id.in_(part)))
            conn.execute(
                story_index.insert(),
                [
                    {
                        "story_id": story_id,
                        "published_at": published_at,
                        "indexed_at": at,
                        "terms": json.dumps(dict(terms), sort_keys=True),
                    }
                    for story_id, published_at, terms in rows
                ],
            )
            postings = [
                {"term": term, "published_at": published_at, "story_id": story_id, "weight": w}
                for story_id, published_at, terms in rows
                for term, w in terms.items()
            ]
            for i in range(0, len(postings), 5000):
                conn.execute(story_terms.insert(), postings[i : i + 5000])
        return len(rows)

    def terms_of(self, story_id: int) -> dict[str, float] | None:
        """A story's own terms, or None if it was never indexed."""
        with self.begin() as conn:
            value = conn.scalar(
                select(story_index.c.terms).where(story_index.c.story_id == story_id)
            )
        return None if value is None else json.loads(value)

    def count_indexed(self, start: datetime, end: datetime) -> int:
        """How many indexed stories were published in [start, end)."""
        with self.begin() as conn:
            return (
                conn.scalar(
                    select(func.count())
                    .select_from(story_index)
                    .where(story_index.c.published_at >= start, story_index.c.published_at < end)
                )
                or 0
            )

    def document_frequencies(
        self, terms: Iterable[str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """How many stories published in [start, end) have each of these terms (a term
        none has is left out). Counted in the primary key's index, no row read."""
        wanted = sorted(set(terms))
        found: dict[str, int] = {}
        with self.begin() as conn:
            for i in range(0, len(wanted), _CHUNK):
                result = conn.execute(
                    select(story_terms.c.term, func.count())
                    .where(
                        story_terms.c.term.in_(wanted[i : i + _CHUNK]),
                        story_terms.c.published_at >= start,
                        story_terms.c.published_at < end,
                    )
                    .group_by(story_terms.c.term)
                )
                found.update((term, int(count)) for term, count in result)
        return found

    def best_matches(
        self, weights: Mapping[str, float], start: datetime, end: datetime, limit: int
    ) -> list[int]:
        """The ids of the `limit` stories of [start, end) with the highest sum of
        weights[term] x their weight for it, summed by the database: a shortlist, which
        digest.related scores again exactly (the database's sum may differ in the last
        digit from one engine to the other)."""
        if not weights:
            return []
        asked = (
            values(column("term", String), column("w", Float), name="asked")
            .data(sorted(weights.items()))
            .cte("asked")
        )
        total = func.sum(story_terms.c.weight * asked.c.w)
        query = (
            select(story_terms.c.story_id)
            .select_from(asked.join(story_terms, story_terms.c.term == asked.c.term))
            .where(story_terms.c.published_at >= start, story_terms.c.published_at < end)
            .group_by(story_terms.c.story_id)
            .order_by(total.desc(), story_terms.c.story_id)
            .limit(limit)
        )
        with self.begin() as conn:
            return list(conn.scalars(query))

    def postings(
        self, terms: Iterable[str], story_ids: Iterable[int]
    ) -> list[tuple[str, int, float]]:
        """(term, story id, weight) of these stories for these terms, sorted, so that what
        is summed from them adds up in one order on every database."""
        wanted = sorted(set(terms))
        ids = sorted(set(story_ids))
        found: list[tuple[str, int, float]] = []
        if not wanted or not ids:
            return found
        with self.begin() as conn:
            for i in range(0, len(wanted), _CHUNK):
                result = conn.execute(
                    select(story_terms.c.term, story_terms.c.story_id, story_terms.c.weight).where(
                        story_terms.c.term.in_(wanted[i : i + _CHUNK]),
                        story_terms.c.story_id.in_(ids),
                    )
                )
                found.extend((t, s, w) for t, s, w in result)
        found.sort()
        return found
