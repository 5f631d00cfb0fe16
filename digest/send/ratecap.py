"""The send's rate cap: `[delivery] rate_per_second` recipients a second for a send in
all, however many threads, processes and machines share it.

A mail provider limits the account, not one process: five workers each paced to the
cap would send at five times it. So every sending thread of every worker takes its
batch's recipients from one bucket per send before it pushes the batch, and waits
as long as the bucket says.

The bucket is a reservation, the "generic cell rate algorithm" form of a token
bucket: it keeps one time, `next_at`, when the cap next allows a recipient out.
Taking n recipients moves it to `max(next_at, now) + n / rate` and tells the taker
to wait until the old `max(next_at, now)`. So batches start one after the other,
spaced by their size over the rate, whoever takes them; a bucket left idle gathers
no credit (no burst after a pause), and a taker that dies after taking wastes its
share rather than lending it to others: the cap can be undershot, never exceeded.
By the time t after the first batch started, at most `rate * t` recipients plus one
batch (the one that just started) have gone out.

- PostgreSQL: one row per send in `send_rate_buckets` (store/rates.py), moved by a
  single `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` (the row lock makes
  concurrent takes queue), by the database's clock, so workers whose clocks
  disagree still agree on the bucket: each is told how long to wait, never at what
  time. One round trip per batch (up to 1,000 recipients).
- SQLite (one machine, one sending process: docs/sending.md): the bucket lives in
  the process, shared by its threads and by every deliver() of the same send in it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from digest.store import Store, rates


class RateCap(Protocol):
    def take(self, count: int) -> float:
        """Reserve `count` recipients; the seconds to wait before sending them."""


class LocalCap:
    """The bucket in this process, shared by its threads (SQLite: one sending process)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._lock = threading.Lock()
        self._next_at = 0.0

    def take(self, count: int) -> float:
        with self._lock:
            now = self.clock()
            start = max(self._next_at, now)
            self._next_at = start + count / self.rate
        return start - now


class DatabaseCap:
    """The bucket in PostgreSQL, shared by every worker of the send on any machine."""

    def __init__(self, store: Store, name: str, rate: float) -> None:
        self.store = store
        self.name = name
        self.rate = rate

    def take(self, count: int) -> float:
        return rates.take(self.store, self.name, count / self.rate)


#: This process's buckets, one per database and send (SQLite), shared by every deliver()
#: of the process: a `digest worker` joining sends, a scheduler, the tests' workers.
_local: dict[tuple[str, int], LocalCap] = {}
_local_lock = threading.Lock()


def rate_cap(store: Store, send_id: int, rate: float) -> RateCap | None:
    """The bucket every worker of send `send_id` takes from; None without a cap."""
    if rate <= 0:
        return None
    if store.dialect == "postgresql":
        return DatabaseCap(store, f"send {send_id}", rate)
    with _local_lock:
        cap = _local.get((str(store.engine.url), send_id))
        if cap is None or cap.rate != rate:
            cap = _local[(str(store.engine.url), send_id)] = LocalCap(rate)
        return cap
