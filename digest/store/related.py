"""The related-stories index: each story's weighted terms, and the postings of a term.

The story_index and story_terms tables (tables.py), and beside them here term_days and
index_days: how many stories posted a term, and how many were indexed, per day of
publication, kept up to date as stories are indexed. A window's document frequencies
are then a sum over its days (a few rows a term) instead of a count over every posting
of the term (tens of thousands in a large archive). digest.related decides what the
terms are and how they are scored; this module only keeps them and reads them back, by
window (published_at), in an order that does not depend on the database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Integer,
    String,
    Table,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection

from digest.store.tables import (
    Aggregate,
    UTCDateTime,
    metadata,
    now,
    stories,
    story_index,
    story_terms,
)

#: Per term and day of publication (UTC, "YYYY-MM-DD"): how many indexed stories
#: posted the term.
term_days = Table(
    "term_days",
    metadata,
    Column("term", String(80), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("stories", Integer, nullable=False),
)
#: Per day of publication: how many stories are indexed.
index_days = Table(
    "index_days",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("stories", Integer, nullable=False),
)


def _day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def _days(start: datetime, end: datetime) -> tuple[str, str]:
    """The first and last day [start, end) touches: a window's days, whole."""
    return _day(start), _day(max(start, end - timedelta(microseconds=1)))


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

    def save_terms(
        self, entries: Iterable[tuple[int, datetime, Mapping[str, float], Iterable[str]]]
    ) -> int:
        """Replace the terms of these stories: (story id, published_at, {term: weight},
        the terms to post). The whole vector is kept for scoring; only the posted terms
        are looked up by (story_terms), which keeps the postings short."""
        rows = list(entries)
        if not rows:
            return 0
        at = now()
        with self.begin() as conn:
            ids = [story_id for story_id, _, _, _ in rows]
            # What the stories posted before is taken off the day counts, what they post
            # now added: a story indexed again counts once.
            term_counts: Counter[tuple[str, str]] = Counter()
            day_counts: Counter[str] = Counter()
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                for (published_at,) in conn.execute(
                    select(story_index.c.published_at).where(story_index.c.story_id.in_(part))
                ):
                    day_counts[_day(published_at)] -= 1
                for term, published_at in conn.execute(
                    select(story_terms.c.term, story_terms.c.published_at).where(
                        story_terms.c.story_id.in_(part)
                    )
                ):
                    term_counts[term, _day(published_at)] -= 1
                conn.execute(story_terms.delete().where(story_terms.c.story_id.in_(part)))
                conn.execute(story_index.delete().where(story_index.c.story_id.in_(part)))
            for _, published_at, _, posted in rows:
                day = _day(published_at)
                day_counts[day] += 1
                for term in posted:
                    term_counts[term, day] += 1
            _add_counts(conn, term_days, [(*k, n) for k, n in term_counts.items() if n])
            _add_counts(conn, index_days, [(d, n) for d, n in day_counts.items() if n])
            conn.execute(
                story_index.insert(),
                [
                    {
                        "story_id": story_id,
                        "published_at": published_at,
                        "indexed_at": at,
                        "terms": json.dumps(dict(terms), sort_keys=True),
                    }
                    for story_id, published_at, terms, _ in rows
                ],
            )
            # Straight to the driver, the date converted once a story: through the ORM's
            # per-row parameter handling, this insert cost more than SQLite's own work.
            as_stored = UTCDateTime().bind_processor(conn.dialect) or (lambda v: v)
            postings = sorted(
                (term, as_stored(published_at), story_id, terms[term])
                for story_id, published_at, terms, posted in rows
                for term in posted
            )  # in the key's order: each page of the index is written once
            columns = "story_terms (term, published_at, story_id, weight)"
            if conn.dialect.name == "postgresql":  # COPY: a row-by-row INSERT is 10x slower
                raw = conn.connection.driver_connection
                with raw.cursor() as cursor, cursor.copy(f"COPY {columns} FROM STDIN") as copy:
                    for posting in postings:
                        copy.write_row(posting)
            else:
                insert = f"INSERT INTO {columns} VALUES (?, ?, ?, ?)"
                for i in range(0, len(postings), 5000):
                    conn.exec_driver_sql(insert, postings[i : i + 5000])
        return len(rows)

    def terms_of(self, story_id: int) -> dict[str, float] | None:
        """A story's own terms, or None if it was never indexed."""
        with self.begin() as conn:
            value = conn.scalar(
                select(story_index.c.terms).where(story_index.c.story_id == story_id)
            )
        return None if value is None else json.loads(value)

    def count_indexed(self, start: datetime, end: datetime) -> int:
        """How many indexed stories were published on the days [start, end) touches."""
        first, last = _days(start, end)
        with self.begin() as conn:
            total = conn.scalar(
                select(func.sum(index_days.c.stories)).where(
                    index_days.c.day >= first, index_days.c.day <= last
                )
            )
        return int(total or 0)

    def document_frequencies(
        self, terms: Iterable[str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """How many stories published on the days [start, end) touches posted each of
        these terms (a term none did is left out): a few day rows a term."""
        wanted = sorted(set(terms))
        first, last = _days(start, end)
        found: dict[str, int] = {}
        with self.begin() as conn:
            for i in range(0, len(wanted), _CHUNK):
                result = conn.execute(
                    select(term_days.c.term, func.sum(term_days.c.stories))
                    .where(
                        term_days.c.term.in_(wanted[i : i + _CHUNK]),
                        term_days.c.day >= first,
                        term_days.c.day <= last,
                    )
                    .group_by(term_days.c.term)
                )
                found.update((term, int(count)) for term, count in result if count)
        return found

    def best_matches(
        self, weights: Mapping[str, float], start: datetime, end: datetime, limit: int
    ) -> list[int]:
        """The ids of the `limit` stories of [start, end) with the highest sum of
        weights[term] x their posted weight for it, summed by the database: a shortlist,
        which digest.related scores again exactly (the database's sum may differ in the
        last digit from one engine to the other). Plain SQL: a VALUES list of a new
        length each time is a statement SQLAlchemy cannot cache, and compiling it cost
        more than running it."""
        if not weights:
            return []
        asked = sorted(weights.items())
        rows = ", ".join(f"(:t{i}, CAST(:w{i} AS FLOAT))" for i in range(len(asked)))
        query = text(
            f"WITH asked(term, w) AS (VALUES {rows}) "
            "SELECT p.story_id FROM asked JOIN story_terms p ON p.term = asked.term "
            "WHERE p.published_at >= :start AND p.published_at < :end "
            "GROUP BY p.story_id ORDER BY SUM(p.weight * asked.w) DESC, p.story_id "
            "LIMIT :limit"
        ).bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
        params: dict[str, object] = {"start": start, "end": end, "limit": limit}
        for i, (term, weight) in enumerate(asked):
            params[f"t{i}"] = term
            params[f"w{i}"] = weight
        with self.begin() as conn:
            return list(conn.scalars(query, params))

    def vectors(self, story_ids: Iterable[int]) -> dict[int, dict[str, float]]:
        """The whole term vectors of these stories (those indexed), by id."""
        ids = sorted(set(story_ids))
        found: dict[int, dict[str, float]] = {}
        with self.begin() as conn:
            for i in range(0, len(ids), _CHUNK):
                result = conn.execute(
                    select(story_index.c.story_id, story_index.c.terms).where(
                        story_index.c.story_id.in_(ids[i : i + _CHUNK])
                    )
                )
                found.update((story_id, orjson.loads(terms)) for story_id, terms in result)
        return found


def _add_counts(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Add each row's count (its last value, the `stories` column) to the table's row of
    that key, inserting the rows not there yet. In key order, so two writers on
    PostgreSQL lock the rows in one order."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(table.c.keys())
    key = ", ".join(table.primary_key.columns.keys())
    upsert = (
        f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join([mark] * len(table.c))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET stories = {table.name}.stories + excluded.stories"
    )
    ordered = sorted(rows)
    for i in range(0, len(ordered), 5000):
        conn.exec_driver_sql(upsert, ordered[i : i + 5000])
