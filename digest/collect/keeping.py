"""What a collect saves, and when: the stories of many sources in one transaction.

A source read is saved with the ones read after it, up to `FLUSH_STORIES` stories at a
time, in one transaction: on SQLite a commit per feed (an fsync each) was a third of a
200-feed collect. What each source answered with (its ETag and Last-Modified) is kept
after its stories are saved, never before, so a crash in between makes the next collect
read the source whole again rather than skip stories it never saved.

A story in two sources is the later source's (as when each source was saved on its
own, the later one updating it); a story twice in one source is its first place there
(the higher one: prominence follows the feed's order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from digest.collect.caps import capped_stories, capped_views
from digest.collect.fetch import Fetcher, Validators
from digest.config import Limits
from digest.models import PageViews, Story
from digest.store import Store

#: Stories held before they are written; a 200-feed collect is a few transactions.
FLUSH_STORIES = 2_000


class Keeper:
    """Saves what sources gave, in as few transactions as is safe."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        fetcher: Fetcher,
        known: Mapping[str, Validators],
        prepare: Callable[[list[Story]], list[Story]],
    ) -> None:
        self.store = store
        self.limits = limits
        self.fetcher = fetcher
        self.known = known
        self.prepare = prepare  # last touches before saving (the pictures: collect.pictures)
        self.new = 0
        self.updated = 0
        self.pageview_rows = 0
        self._stories: dict[str, Story] = {}
        self._sources: list[str] = []

    def stories(self, source: str, found: list[Story]) -> None:
        first_place: dict[str, Story] = {}
        for story in found:
            first_place.setdefault(story.url, story)
        for url, story in first_place.items():
            self._stories.pop(url, None)  # the later source's, as a later save would make it
            self._stories[url] = story
        self._sources.append(source)
        if len(self._stories) >= FLUSH_STORIES:
            self.flush()

    def views(self, source: str, rows: list[PageViews]) -> None:
        self.pageview_rows += self.store.stories.upsert_pageviews(capped_views(rows, self.limits))
        self._sources.append(source)
        self.flush()

    def flush(self) -> None:
        if self._stories:
            ready = self.prepare(capped_stories(list(self._stories.values()), self.limits))
            new, updated = self.store.stories.upsert_stories(ready)
            self.new += new
            self.updated += updated
        answers = {
            source: tuple(answered)
            for source in self._sources
            if (answered := self.fetcher.answered.get(source)) is not None
            and tuple(self.known.get(source, ())) != tuple(answered)
        }
        if answers:
            self.store.stories.keep_validators(answers)
        self._stories.clear()
        self._sources.clear()
