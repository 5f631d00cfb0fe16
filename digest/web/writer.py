"""The web app's one writer: every write the public endpoints make, one at a time, and
the one-click unsubscribes that arrive meanwhile written together.

SQLite takes one writer at a time. Forty request threads each opening a write
transaction met in SQLite's busy handler, which sleeps and retries (up to 100 ms a
wait): 305 unsubscribes a second with a p99 of 671 ms under 16 connections
(docs/benchmarks.md). Here the app's writes queue in the process instead: at most one
runs at a time (`Writer.run`), and the unsubscribes that queued while one ran go
together in the next transaction (`Batched`), so a burst costs a few transactions,
not one each. PostgreSQL takes the same path: one transaction for many readers is
cheaper there too, and nothing waits on a lock.

Each request still gets its own answer: whether its address left now or before, and
why. A write that fails fails the requests it carried (HTTP 500 or 503), as their own
write would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")

#: At most this many requests in one transaction: a long one would hold up the rest.
MOST_AT_ONCE = 500


class Writer:
    """At most one of the app's writes at a time, run in a worker thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    async def run(self, write: Callable[[], R]) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an app served again on a new loop (tests do this)
            self._loop, self._lock = loop, asyncio.Lock()
        async with self._lock:
            return await run_in_threadpool(write)


class Batched(Generic[T, R]):
    """Requests of one kind, written together: `write(items)` gives one result per item,
    in order, in one transaction."""

    def __init__(self, writer: Writer, write: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._writer = writer
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None  # held, so it is not collected

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            # Served again on a new loop: what the old one left can never be written.
            self._waiting, self._draining, self._task = [], False, None
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if not self._draining:
            self._draining = True
            self._task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[:MOST_AT_ONCE]
                del self._waiting[:MOST_AT_ONCE]
                items = [item for item, _ in group]
                try:
                    results = await self._writer.run(partial(self._write, items))
                except Exception as exc:  # each request answers for itself
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():  # its client may have gone
                        future.set_result(result)
        finally:
            self._draining = False
