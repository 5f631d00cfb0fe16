"""Sources read at once: a collect of 200 feeds waits for the slowest few, not for all
200 one after the other.

Each source is fetched and parsed in a worker thread (the Fetcher and its connection
pool are shared; parsing overlaps other sources' fetching), at most
`[limits] collect_concurrency` at a time (100) and `[limits] host_concurrency` (6, as a
browser opens) from any one origin (scheme, host and port), so a newsroom's own server
is not hit by all of its section feeds together. The results come
back in the order the sources were given, so what is saved, and every line the collect
prints, is the same from one run to the next.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from digest.collect.fetch import Fetcher, NotModified
from digest.errors import InputError


class Outcome(NamedTuple):
    """What one source gave: what it holds, or that it had not changed, or why not."""

    source: str
    found: list[Any]
    unchanged: bool = False
    error: InputError | None = None


Read = Callable[[], list[Any]]


def read_at_once(fetcher: Fetcher, jobs: Sequence[tuple[str, Read]]) -> Iterator[Outcome]:
    """Each (source, read) run in the pool; their outcomes in the order given."""
    limits = fetcher.limits
    hosts: defaultdict[str, threading.Semaphore] = defaultdict(
        lambda: threading.Semaphore(limits.host_concurrency)
    )
    hosts_lock = threading.Lock()

    def run(source: str, read: Read) -> Outcome:
        parts = urlsplit(source)
        host = f"{parts.scheme}://{parts.netloc}" if parts.hostname else ""
        with hosts_lock:
            gate = hosts[host] if host else None
        try:
            if gate is None:  # a file: no server to spare
                return _read(fetcher, source, read)
            with gate:
                return _read(fetcher, source, read)
        except InputError as exc:
            return Outcome(source, [], error=exc)

    if len(jobs) <= 1:  # one source: no thread to start
        yield from (run(source, read) for source, read in jobs)
        return
    with ThreadPoolExecutor(
        max_workers=min(limits.collect_concurrency, len(jobs)), thread_name_prefix="collect"
    ) as pool:
        futures: list[Future[Outcome]] = [pool.submit(run, source, read) for source, read in jobs]
        try:
            for future in futures:
                yield future.result()
        finally:  # the caller stopped early (an interrupt): sources not started stay so
            for future in futures:
                future.cancel()


def _read(fetcher: Fetcher, source: str, read: Read) -> Outcome:
    fetcher.check_collect_deadline(source)
    try:
        return Outcome(source, read())
    except NotModified:
        return Outcome(source, [], unchanged=True)
