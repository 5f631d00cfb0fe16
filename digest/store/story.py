"""Stories and their page views: what was published, and how much it was read.

The stories and page_views tables: collect writes them, rank and the editor read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    func,
    select,
)

from digest.models import (
    PageViews,
    Story,
)
from digest.store.tables import (
    Aggregate,
    _story,
    _upsert,
    now,
    page_views,
    source_validators,
    stories,
)


def _comparable(value: Any) -> Any:
    """A value as the database gives it back (a float's float, a time's time)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Stories(Aggregate):
    """The queries of stories and page views: `store.stories`."""

    def upsert_stories(self, items: Iterable[Story]) -> tuple[int, int]:
        """Insert new stories, update known ones whose content changed (by canonical URL).
        Returns (new, updated): a story collected again as it was is neither, and its
        row (collected_at too) is left as it is.

        A known story's body is kept when this collect brings none: a feed that sends its
        full text only for its newest entries, or a page that failed to give its main
        text once, does not wipe what an earlier collect found.
        """
        rows = []
        seen: set[str] = set()
        for s in items:
            if s.url in seen:
                continue
            seen.add(s.url)
            rows.append(
                {
                    "url": s.url,
                    "title": s.title,
                    "dek": s.dek,
                    "byline": s.byline,
                    "section": s.section,
                    "image_url": s.image_url,
                    "image_caption": s.image_caption,
                    "image_credit": s.image_credit,
                    "source": s.source,
                    "prominence": s.prominence,
                    "body": s.body,
                    "published_at": s.published_at,
                    "collected_at": now(),
                }
            )
        if not rows:
            return 0, 0
        content = [c for c in rows[0] if c not in ("url", "collected_at")]
        with self.begin() as conn:
            stored: dict[str, tuple[Any, ...]] = {}
            urls = [r["url"] for r in rows]
            for i in range(0, len(urls), 500):
                found = conn.execute(
                    select(stories.c.url, *(stories.c[c] for c in content)).where(
                        stories.c.url.in_(urls[i : i + 500])
                    )
                )
                stored.update((row[0], tuple(row[1:])) for row in found)
            body = content.index("body")
            for r in rows:
                if not r["body"] and r["url"] in stored:
                    r["body"] = stored[r["url"]][body]
            changed = [
                r for r in rows if stored.get(r["url"]) != tuple(_comparable(r[c]) for c in content)
            ]
            _upsert(conn, stories, changed, [c for c in rows[0] if c != "url"])
        new = sum(1 for r in changed if r["url"] not in stored)
        return new, len(changed) - new

    def stories_between(self, start: datetime, end: datetime) -> list[Story]:
        with self.begin() as conn:
            result = conn.execute(
                select(stories)
                .where(stories.c.published_at >= start, stories.c.published_at < end)
                .order_by(stories.c.published_at.desc(), stories.c.id)
            )
            return [_story(r) for r in result]

    def stories_by_id(self, ids: Iterable[int]) -> dict[int, Story]:
        ids = list(ids)
        if not ids:
            return {}
        with self.begin() as conn:
            result = conn.execute(select(stories).where(stories.c.id.in_(ids)))
            return {r.id: _story(r) for r in result}

    def count_stories(self) -> int:
        with self.begin() as conn:
            return conn.scalar(select(func.count()).select_from(stories)) or 0

    def upsert_pageviews(self, items: Iterable[PageViews]) -> int:
        merged: dict[tuple[str, date, str], int] = {}
        for pv in items:
            key = (pv.url, pv.day, pv.source)
            merged[key] = merged.get(key, 0) + pv.views
        rows = [{"url": u, "day": d, "source": s, "views": v} for (u, d, s), v in merged.items()]
        with self.begin() as conn:
            for i in range(0, len(rows), 1000):
                _upsert(conn, page_views, rows[i : i + 1000], ["views"])
        return len(rows)

    def views_by_url(self, first_day: date, last_day: date) -> dict[str, int]:
        """Total page views per URL over local days first_day..last_day inclusive."""
        with self.begin() as conn:
            result = conn.execute(
                select(page_views.c.url, func.sum(page_views.c.views))
                .where(page_views.c.day >= first_day, page_views.c.day <= last_day)
                .group_by(page_views.c.url)
            )
            return {url: int(total) for url, total in result}

    def most_viewed(self, first_day: date, last_day: date, limit: int) -> list[tuple[Story, int]]:
        """The site's chart: stored stories by their page views over local days
        first_day..last_day inclusive, most first (ties by URL); page views of pages that
        are no story (the front page, a section page) do not count."""
        totals = (
            select(page_views.c.url, func.sum(page_views.c.views).label("total"))
            .where(page_views.c.day >= first_day, page_views.c.day <= last_day)
            .group_by(page_views.c.url)
            .subquery()
        )
        with self.begin() as conn:
            rows = conn.execute(
                select(stories, totals.c.total)
                .join(totals, totals.c.url == stories.c.url)
                .where(totals.c.total > 0)
                .order_by(totals.c.total.desc(), stories.c.url)
                .limit(limit)
            ).all()
        return [(_story(row), int(row.total)) for row in rows]

    def stories_by_url(self, urls: Iterable[str]) -> dict[str, Story]:
        wanted = list(dict.fromkeys(urls))
        if not wanted:
            return {}
        with self.begin() as conn:
            rows = conn.execute(select(stories).where(stories.c.url.in_(wanted))).all()
        return {row.url: _story(row) for row in rows}

    def validators(self) -> dict[str, tuple[str, str]]:
        """(ETag, Last-Modified) per source, as each answered the last collect that read it."""
        with self.begin() as conn:
            rows = conn.execute(
                select(
                    source_validators.c.source,
                    source_validators.c.etag,
                    source_validators.c.last_modified,
                )
            )
            return {source: (etag, modified) for source, etag, modified in rows}

    def keep_validators(self, answers: Mapping[str, tuple[str, str]]) -> None:
        """What each source answered with: (ETag, Last-Modified) by source, in one
        transaction. Called once the sources' stories are saved, never before."""
        rows = [
            {"source": source, "etag": etag, "last_modified": modified, "updated_at": now()}
            for source, (etag, modified) in answers.items()
        ]
        with self.begin() as conn:
            _upsert(conn, source_validators, rows, ["etag", "last_modified", "updated_at"])
