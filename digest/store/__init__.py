"""The database behind every stage: one `Store`, one attribute per aggregate.

A caller opens one `Store` (`Store.open(url)`) and passes it around; what it does
with it names the aggregate it touches, so a stage's calls show which tables it uses:

- `store.stories`: stories and page views (story.py)
- `store.editions`: editions, their picks, the editors' overrides and events, the
  renders (edition.py)
- `store.subscribers`: subscribers and suppressions (subscriber.py)
- `store.sends`: sends and the batch ledger (send.py); the per-recipient records
  (delivery.py), SendGrid's events (events.py), the sends' rate buckets (rates.py)
  and who started, paused or resumed a send (actions.py) are functions over a Store
- `store.runs`: job runs, the scheduler's lease and advisory locks (runs.py)
- `store.related`: the related-stories index, each story's terms (related.py)

The tables, the engine and the migration hook are in tables.py and exported here.
The aggregate modules have singular names (story.py, not stories.py) because the
package exports the tables under the plural (`from digest.store import stories`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from digest.store.edition import Editions
from digest.store.related import RelatedIndex
from digest.store.runs import Runs
from digest.store.send import Sends
from digest.store.story import Stories
from digest.store.subscriber import Subscribers
from digest.store.tables import (
    CONNECT_TIMEOUT,
    MIGRATIONS,
    SubscriberWrite,
    UTCDateTime,
    _insert_for,
    _upsert,
    _with_connect_timeout,
    claimed_batch,
    deliveries,
    edition_events,
    edition_overrides,
    edition_picks,
    editions,
    job_runs,
    make_engine,
    metadata,
    migrate,
    newest_revision,
    now,
    page_views,
    renders,
    scheduler_lease,
    send_batches,
    sends,
    source_validators,
    stories,
    story_index,
    story_terms,
    subscribers,
    suppressions,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "MIGRATIONS",
    "Editions",
    "RelatedIndex",
    "Runs",
    "Sends",
    "Store",
    "Stories",
    "SubscriberWrite",
    "Subscribers",
    "UTCDateTime",
    "_insert_for",
    "_upsert",
    "claimed_batch",
    "deliveries",
    "edition_events",
    "edition_overrides",
    "edition_picks",
    "editions",
    "job_runs",
    "make_engine",
    "metadata",
    "migrate",
    "newest_revision",
    "now",
    "page_views",
    "renders",
    "scheduler_lease",
    "send_batches",
    "sends",
    "source_validators",
    "stories",
    "story_index",
    "story_terms",
    "subscribers",
    "suppressions",
]


class Store:
    """The database behind every stage. One per process; connections are pooled."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stories = Stories(self)
        self.editions = Editions(self)
        self.subscribers = Subscribers(self)
        self.sends = Sends(self)
        self.runs = Runs(self)
        self.related = RelatedIndex(self)

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> Store:
        engine = make_engine(_with_connect_timeout(url))
        try:
            if upgrade:
                migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
