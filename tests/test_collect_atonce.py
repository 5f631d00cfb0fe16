"""Collect reads sources at once, within its limits, and asks each only for what changed
(issue 12, item 1): real HTTP servers on 127.0.0.1, real feeds, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fakes.http import serving_http

from digest.collect import collect_all
from digest.config import Settings
from digest.store import Store

SAMPLE_FEED = Path(__file__).resolve().parent.parent / "examples" / "sample-newsroom" / "feed.xml"
MODIFIED = formatdate(1764900000, usegmt=True)


class FeedHost:
    """Serves the sample feed under any path, as several feeds of one site would be,
    keeping what each request asked and how many were in flight at once."""

    def __init__(self, delay: float = 0.0, etag: bool = True, modified: bool = True) -> None:
        self.delay, self.etag, self.modified = delay, etag, modified
        self.body = SAMPLE_FEED.read_bytes()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.asked: list[tuple[str, str, str]] = []  # path, If-None-Match, If-Modified-Since
        self.full_answers = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with host.lock:
                    host.in_flight += 1
                    host.most_in_flight = max(host.most_in_flight, host.in_flight)
                    host.asked.append(
                        (
                            self.path,
                            self.headers.get("If-None-Match", ""),
                            self.headers.get("If-Modified-Since", ""),
                        )
                    )
                try:
                    time.sleep(host.delay)
                    tag = f'"v1-{self.path.strip("/")}"'
                    fresh = (host.etag and self.headers.get("If-None-Match") == tag) or (
                        not host.etag
                        and host.modified
                        and self.headers.get("If-Modified-Since") == MODIFIED
                    )
                    if fresh:
                        self.send_response(304)
                        self.end_headers()
                        return
                    with host.lock:
                        host.full_answers += 1
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml")
                    self.send_header("Content-Length", str(len(host.body)))
                    if host.etag:
                        self.send_header("ETag", tag)
                    if host.modified:
                        self.send_header("Last-Modified", MODIFIED)
                    self.end_headers()
                    self.wfile.write(host.body)
                finally:
                    with host.lock:
                        host.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def slow_host() -> Iterator[tuple[str, FeedHost]]:
    host = FeedHost(delay=0.3)
    with serving_http(host.handler()) as base:
        yield base, host


def _limited(settings: Settings, **limits: int) -> Settings:
    return replace(settings, limits=replace(settings.limits, **limits))


def test_sources_are_read_at_once_but_never_more_than_a_host_allows(
    settings: Settings, store: Store, slow_host: tuple[str, FeedHost]
) -> None:
    base, host = slow_host
    feeds = [f"{base}/feed-{n}.xml" for n in range(8)]
    ran = collect_all(
        _limited(settings, collect_concurrency=16, host_concurrency=3),
        store,
        feeds=feeds,
        pageviews=[],
    )
    assert ran.failed_sources == [] and ran.new == 11
    # At once (one at a time would never have two in flight), and at most 3 from one host.
    assert host.most_in_flight == 3


def test_one_source_at_a_time_when_the_newsroom_says_so(
    settings: Settings, store: Store, slow_host: tuple[str, FeedHost]
) -> None:
    base, host = slow_host
    feeds = [f"{base}/feed-{n}.xml" for n in range(4)]
    collect_all(_limited(settings, collect_concurrency=1), store, feeds=feeds, pageviews=[])
    assert host.most_in_flight == 1
    # Saved in the order given, whatever order the answers came in.
    assert [path for path, _, _ in host.asked] == [f"/feed-{n}.xml" for n in range(4)]


@pytest.mark.parametrize(
    ("etag", "modified"), [(True, True), (True, False), (False, True)], ids=["both", "etag", "date"]
)
def test_an_unchanged_source_is_a_304_and_nothing_is_parsed_or_updated(
    settings: Settings, store: Store, etag: bool, modified: bool
) -> None:
    host = FeedHost(etag=etag, modified=modified)
    with serving_http(host.handler()) as base:
        feed = f"{base}/news.xml"
        first = collect_all(settings, store, feeds=[feed], pageviews=[])
        assert (first.new, first.unchanged_sources) == (11, [])
        second = collect_all(settings, store, feeds=[feed], pageviews=[])
        # Asked with what the server said last time, and told nothing changed.
        _, if_none_match, if_modified_since = host.asked[-1]
        assert if_none_match == ('"v1-news.xml"' if etag else "")
        assert if_modified_since == (MODIFIED if modified else "")
        assert (second.new, second.updated, second.unchanged_sources) == (0, 0, [feed])
        assert host.full_answers == 1
        # --full: asked without validators, read whole again.
        third = collect_all(settings, store, feeds=[feed], pageviews=[], full=True)
        assert host.asked[-1][1:] == ("", "")
        assert (third.new, third.updated, third.unchanged_sources) == (0, 0, [])
        assert host.full_answers == 2
    assert store.stories.count_stories() == 11


def test_validators_are_kept_only_once_the_stories_are_saved(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FeedHost()
    with serving_http(host.handler()) as base:
        feed = f"{base}/news.xml"

        def lost(*args: object) -> tuple[int, int]:
            raise RuntimeError("the database went away")

        monkeypatch.setattr(type(store.stories), "upsert_stories", lost)
        with pytest.raises(RuntimeError):
            collect_all(settings, store, feeds=[feed], pageviews=[])
        monkeypatch.undo()
        # Nothing was saved, so the next collect must not be told "not modified".
        again = collect_all(settings, store, feeds=[feed], pageviews=[])
        assert (again.new, again.unchanged_sources) == (11, [])
        assert host.asked[-1][1:] == ("", "")
