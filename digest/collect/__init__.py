"""Collect: bring the day's stories and page views into the store.

Each source kind has its own module (feeds.py: RSS/Atom, cms.py: WordPress REST or
JSON Feed, pages.py: article pages, pageviews.py: analytics CSV, accesslogs.py: web
server logs); `collect_all` runs the ones digest.toml names. What they share:

- one fetch (fetch.py), with the size cap and the deadlines of `[limits]`, and one
  HTTP client for the whole collect;
- one place where stories and page views are capped before they are saved (caps.py);
- one date rule: a story needs a publication date the source gives (a feed entry's
  published, updated or created date; a post's `date_gmt` or `date`, an item's
  `date_published`; a page's JSON-LD, `<meta>` or `<time>`). An entry with none, or
  with one that cannot be read as a date, is skipped with one line
  (`feeds.NO_DATE`): a story without a date has no day's edition, and dating it
  "now" would put an old story at the top of today's.
- once `[limits] collect_deadline` has passed, each source not yet started is one
  line and the collect ends with what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from digest.errors import InputError

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.models import PageViews, Story
    from digest.store import Store

log = logging.getLogger("digest.collect")

#: Told as each source is done: (sources done, sources in all, the source's name).
OnSource = Callable[[int, int, str], None]


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
    pages: list[str] | None = None,
    cms: list[str] | None = None,
    access_logs: list[str] | None = None,
    on_source: OnSource | None = None,
) -> CollectResult:
    """Read every feed, CMS export, article page, page-view export and access log; one
    bad source never stops the others. A kind left as None is read from digest.toml; [] reads none.
    `on_source(done, total, name)` is told as each source is done (the article pages
    count as one source: they are read together), for a progress display.
    """
    # The readers load feedparser, httpx and the rest: only a collect needs them, and
    # every `digest` command imports this package (for digest.collect.urls, say).
    from digest.collect.accesslogs import read_access_logs
    from digest.collect.caps import capped_stories, capped_views
    from digest.collect.cms import read_cms
    from digest.collect.feeds import read_feed
    from digest.collect.fetch import Fetcher
    from digest.collect.pages import read_pages
    from digest.collect.pageviews import read_pageviews
    from digest.collect.pictures import Rehoster

    sources = settings.sources
    feeds = list(sources.feeds) if feeds is None else feeds
    pageviews = list(sources.pageviews) if pageviews is None else pageviews
    pages = list(sources.pages) if pages is None else pages
    cms = list(sources.cms) if cms is None else cms
    access_logs = list(sources.access_logs) if access_logs is None else access_logs
    zone = settings.newsroom.zone
    locale = settings.newsroom.locale  # several authors are joined in its words
    limits = settings.limits
    result = CollectResult()
    total = len(feeds) + len(cms) + (1 if pages else 0) + len(pageviews) + len(access_logs)
    done = 0

    def tell(name: str) -> None:
        nonlocal done
        done += 1
        if on_source is not None:
            on_source(done, total, name)

    with Fetcher(limits) as fetcher:
        rehost = Rehoster(settings, fetcher)

        def keep(stories: list[Story]) -> None:
            new, updated = store.stories.upsert_stories(rehost(capped_stories(stories, limits)))
            result.new += new
            result.updated += updated

        def keep_views(rows: list[PageViews]) -> None:
            result.pageview_rows += store.stories.upsert_pageviews(capped_views(rows, limits))

        def gather(
            source: str, read: Callable[[], list[Any]], save: Callable[[list[Any]], None]
        ) -> None:
            """One source read and saved; one that cannot be read is one error line."""
            try:
                fetcher.check_collect_deadline(source)
                found = read()
            except InputError as exc:
                log.error("%s", exc)
                result.failed_sources.append(source)
            else:
                save(found)
            tell(source)

        website = settings.newsroom.website
        for source in feeds:
            gather(source, partial(read_feed, source, fetcher=fetcher, locale=locale), keep)
        for source in cms:
            read = partial(read_cms, source, zone, fetcher=fetcher, locale=locale)
            gather(source, read, keep)
        if pages:
            # One list, read together: its order is the newsroom's order of importance.
            # Each page's fetch checks the collect deadline, so one left is one line.
            harvest = read_pages(pages, zone, fetcher=fetcher, locale=locale)
            result.failed_sources += harvest.failed
            keep(harvest.stories)
            tell(f"{len(pages)} article pages" if len(pages) > 1 else pages[0])
        for source in pageviews:
            gather(source, partial(read_pageviews, source, zone, fetcher=fetcher), keep_views)
        for source in access_logs:
            read = partial(read_access_logs, source, website, zone)
            gather(source, lambda read=read: read().rows, keep_views)
    return result
