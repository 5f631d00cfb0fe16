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

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.models import PageViews
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
    #: Sources that answered "not modified" to what they said last time (a 304).
    unchanged_sources: list[str] = field(default_factory=list)


def _log_rows(read: Callable[..., Any], *args: Any) -> list[PageViews]:
    """An access log's page views (read_access_logs gives them with its counts)."""
    rows: list[PageViews] = read(*args).rows
    return rows


def collect_all(
    settings: Settings,
    store: Store,
    feeds: list[str] | None = None,
    pageviews: list[str] | None = None,
    pages: list[str] | None = None,
    cms: list[str] | None = None,
    access_logs: list[str] | None = None,
    on_source: OnSource | None = None,
    full: bool = False,
) -> CollectResult:
    """Read every feed, CMS export, article page, page-view export and access log; one
    bad source never stops the others. A kind left as None is read from digest.toml; [] reads none.
    `on_source(done, total, name)` is told as each source is done (the article pages
    count as one source: they are read together), for a progress display. A feed or
    CMS export that answers 304 to the validators it gave last time is counted in
    `unchanged_sources` and not parsed; `full` asks every source for all it has.
    """
    # The readers load feedparser, httpx and the rest: only a collect needs them, and
    # every `digest` command imports this package (for digest.collect.urls, say).
    from digest.collect.accesslogs import read_access_logs
    from digest.collect.atonce import Outcome, read_at_once
    from digest.collect.cms import read_cms
    from digest.collect.feeds import read_feed
    from digest.collect.fetch import Fetcher, Validators
    from digest.collect.keeping import Keeper
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

    known = {} if full else {src: Validators(*v) for src, v in store.stories.validators().items()}
    with Fetcher(limits, known) as fetcher:
        keeper = Keeper(store, limits, fetcher, known, Rehoster(settings, fetcher))

        def take(outcome: Outcome, save: Callable[[str, list[Any]], None]) -> None:
            """One source's stories or page views to be saved; one that could not be read
            is one error line, one that had not changed is counted."""
            if outcome.error is not None:
                log.error("%s", outcome.error)
                result.failed_sources.append(outcome.source)
            elif outcome.unchanged:
                result.unchanged_sources.append(outcome.source)
            else:
                save(outcome.source, outcome.found)
            tell(outcome.source)

        # Feeds and CMS exports at once (atonce.py), saved in the order given.
        read_stories = [
            (source, partial(read_feed, source, fetcher=fetcher, locale=locale)) for source in feeds
        ]
        read_stories += [
            (source, partial(read_cms, source, zone, fetcher=fetcher, locale=locale))
            for source in cms
        ]
        for outcome in read_at_once(fetcher, read_stories):
            take(outcome, keeper.stories)
        keeper.flush()
        if pages:
            # One list, read together: its order is the newsroom's order of importance.
            # Each page's fetch checks the collect deadline, so one left is one line.
            harvest = read_pages(pages, zone, fetcher=fetcher, locale=locale)
            result.failed_sources += harvest.failed
            keeper.stories("pages", harvest.stories)
            keeper.flush()
            tell(f"{len(pages)} article pages" if len(pages) > 1 else pages[0])
        website = settings.newsroom.website
        read_views = [
            (source, partial(read_pageviews, source, zone, fetcher=fetcher)) for source in pageviews
        ]
        read_views += [
            (source, partial(_log_rows, read_access_logs, source, website, zone))
            for source in access_logs
        ]
        for outcome in read_at_once(fetcher, read_views):
            take(outcome, keeper.views)
    result.new, result.updated, result.pageview_rows = (
        keeper.new,
        keeper.updated,
        keeper.pageview_rows,
    )
    return result
