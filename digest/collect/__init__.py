"""Collect: bring the day's stories and page views into the store.

Each source kind has its own module; `collect_all` runs the ones digest.toml names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from digest.collect.feeds import read_feed
from digest.collect.pageviews import read_pageviews
from digest.config import Settings
from digest.errors import InputError
from digest.store import Store

log = logging.getLogger("digest.collect")


@dataclass
class CollectResult:
    new: int = 0
    updated: int = 0
    pageview_rows: int = 0
    failed_sources: list[str] = field(default_factory=list)


def collect_all(
    settings: Settings,
    store: Store,
    feeds: list[str] | None = None,
    pageviews: list[str] | None = None,
) -> CollectResult:
    """Read every feed and page-view export; one bad source never stops the others."""
    result = CollectResult()
    for source in settings.sources.feeds if feeds is None else feeds:
        try:
            stories = read_feed(source)
        except InputError as exc:
            log.error("%s", exc)
            result.failed_sources.append(source)
            continue
        new, updated = store.upsert_stories(stories)
        result.new += new
        result.updated += updated
    for source in settings.sources.pageviews if pageviews is None else pageviews:
        try:
            rows = read_pageviews(source, settings.newsroom.zone)
        except InputError as exc:
            log.error("%s", exc)
            result.failed_sources.append(source)
            continue
        result.pageview_rows += store.upsert_pageviews(rows)
    return result
