"""collect against hostile sources (issue 8, case 5): every fetch bounded in size and
time, and every stored field capped, in one place for every kind of source.

(The date rule and the page-view CSV that is not one, case 7, are tested beside their
collectors, in test_collect.py, test_collect_cms.py and test_collect_pages.py.)

The servers are real, on 127.0.0.1, and generate what they send (400 MB is never
stored). What could eat the machine's memory or hang runs `digest collect` as its own
process, as an operator runs it, under an address-space limit and a timeout, and is
measured with wait4 (its own peak RSS, not the test's).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import SAMPLE
from fakes.http import serving_http

from digest import config
from digest.collect import collect_all
from digest.errors import InputError
from digest.models import Story
from digest.store import Store

MB = 1_000_000
SAMPLE_FEED = SAMPLE / "feed.xml"
SAMPLE_STORIES = 11
# A collect of the sample newsroom needs under 300 MB of address space; 1 GiB leaves
# room for a 20 MB response and its parse, and turns a 400 MB read into a MemoryError.
ADDRESS_SPACE = 1 << 30
WINDOW_DATE = "Thu, 04 Dec 2025 20:00:00 -0900"  # in the 2025-12-05 edition's window


# -- a hostile server -----------------------------------------------------------------


@functools.cache
def gzip_bomb() -> bytes:
    """256 MiB of a feed's white space, gzipped to about 260 KB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b'<?xml version="1.0"?><rss version="2.0"><channel><title>')]
    block = b" " * (1 << 20)
    parts += [packer.compress(block) for _ in range(256)]
    parts.append(packer.flush())
    return b"".join(parts)


class Hostile(BaseHTTPRequestHandler):
    """Each path is one way a source misbehaves; /feed.xml is the sample feed, behaving."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        # The collector hanging up mid-answer, or mid-connection, is what these tests want.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_GET(self) -> None:
        route = self.path.split("?")[0].strip("/").replace("-", "_").replace(".", "_")
        getattr(self, f"serve_{route}", self.serve_missing)()

    def _head(self, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/rss+xml")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def _endless(self, total: int) -> None:
        """`total` bytes that start like a feed, written a megabyte at a time."""
        start = b'<?xml version="1.0"?><rss version="2.0"><channel>'
        block = b"<!-- " + b"x" * (MB - 10) + b" -->\n"
        self.wfile.write(start)
        blocks, rest = divmod(total - len(start), MB)
        for _ in range(blocks):
            self.wfile.write(block)
        self.wfile.write(b" " * rest)

    def serve_missing(self) -> None:
        self._head(404, Content_Length="0")

    def serve_feed_xml(self) -> None:
        body = SAMPLE_FEED.read_bytes()
        self._head(Content_Length=str(len(body)))
        self.wfile.write(body)

    def serve_huge_with_length(self) -> None:
        self._head(Content_Length=str(400 * MB))
        self._endless(400 * MB)

    def serve_huge_without_length(self) -> None:
        self._head(Connection="close")  # no length: the body ends when the server closes
        self._endless(400 * MB)
        self.close_connection = True

    def serve_redirect_with_huge_body(self) -> None:
        self._head(302, Location="/feed.xml", Content_Length=str(400 * MB))
        self._endless(400 * MB)

    def serve_gzip_bomb(self) -> None:
        bomb = gzip_bomb()
        self._head(Content_Encoding="gzip", Content_Length=str(len(bomb)))
        self.wfile.write(bomb)

    def serve_loop(self) -> None:
        self._head(302, Location="/loop", Content_Length="0")

    def serve_drip(self) -> None:
        """A byte every half second, each in time for any read timeout, for two minutes."""
        self._head(Content_Length=str(10_000))
        for _ in range(240):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.5)

    def serve_drip_headers(self) -> None:
        """The status line, then the headers a byte every half second."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(240):
            self.wfile.write(b"a")
            self.wfile.flush()
            time.sleep(0.5)


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    with serving_http(Hostile) as url:
        yield url


# -- `digest` as its own process ------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float  # the process's own peak RSS

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


def set_up(newsroom: Path, limits: str = "", **sources: list[str]) -> Path:
    """The newsroom's digest.toml reading only `sources` (feeds, cms, pages, pageviews),
    with `limits` as its [limits] table."""
    toml = newsroom / "digest.toml"
    lines = []
    for line in toml.read_text(encoding="utf-8").splitlines():
        if line.startswith(("feeds =", "pageviews =")):
            continue
        lines.append(line)
        if line == "[sources]":
            lines += [f"{kind} = {json.dumps(found)}" for kind, found in sources.items()]
    toml.write_text("\n".join(lines) + f"\n[limits]\n{limits}\n", encoding="utf-8")
    return toml


def digest(newsroom: Path, *args: str, timeout: float = 90, memory: int = 0) -> Ran:
    """`digest ARGS` in the newsroom; killed after `timeout` s (then returncode -9)."""
    env = {"PATH": "/usr/bin:/bin", "DIGEST_SECRET_KEY": "test"}
    if "PYTHONPATH" in os.environ:  # to run these tests against another checkout
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def limit_memory() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    out, err = newsroom / "stdout.txt", newsroom / "stderr.txt"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest.cli", *args],
            cwd=newsroom,
            env=env,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=limit_memory,
        )
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            # wait4, not wait: the child's own peak RSS (Linux: in kilobytes).
            _pid, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
    return Ran(
        process.returncode,
        out.read_text(),
        err.read_text(),
        time.monotonic() - started,
        usage.ru_maxrss / 1024,
    )


def stored(newsroom: Path) -> dict[str, Story]:
    """Every story the newsroom's store holds, by title."""
    store = Store.open(f"sqlite:///{newsroom / 'var' / 'digest.db'}")
    try:
        everything = store.stories.stories_between(
            datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
    finally:
        store.close()
    return {story.title: story for story in everything}


def words(characters: int, stem: str = "word") -> str:
    """Plain words, a space between each, `characters` long or a little over."""
    count = characters // (len(stem) + 6) + 1
    return " ".join(f"{stem}{n:05d}" for n in range(count))


def rss(*items: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Test</title>'
        + "".join(items)
        + "</channel></rss>\n"
    )


def item(title: str, link: str, date: str | None = WINDOW_DATE, extra: str = "") -> str:
    dated = f"<pubDate>{date}</pubDate>" if date is not None else ""
    return f"<item><title>{title}</title><link>{link}</link>{dated}{extra}</item>"


def load(newsroom: Path) -> config.Settings:
    return config.load(newsroom / "digest.toml", env={"DIGEST_SECRET_KEY": "test"})


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- case 5: a response over the size cap -----------------------------------------------


@pytest.mark.parametrize("path", ["huge-with-length", "huge-without-length"])
def test_a_400_mb_response_is_one_line_and_the_other_feed_is_read_in_little_memory(
    newsroom: Path, hostile: str, path: str
) -> None:
    url = f"{hostile}/{path}"
    set_up(newsroom, feeds=[url, str(SAMPLE_FEED)])
    ran = digest(newsroom, "collect", memory=ADDRESS_SPACE)
    assert ran.errors == [
        f"error: {url}: response is over 20 MB ([limits] fetch_max_bytes); skipped"
    ], ran.stderr
    assert "Traceback" not in ran.stderr
    # Exit 1 says a source could not be read, as for a 404; the rest was collected.
    assert ran.returncode == 1
    assert f"{SAMPLE_STORIES} new stories" in ran.stdout
    assert "1 source could not be read" in ran.stdout
    assert ran.peak_mb < 300, f"peak RSS {ran.peak_mb:.0f} MB"


def test_a_redirect_carrying_a_400_mb_body_is_followed_without_reading_it(
    newsroom: Path, hostile: str
) -> None:
    set_up(newsroom, feeds=[f"{hostile}/redirect-with-huge-body"])
    ran = digest(newsroom, "collect", memory=ADDRESS_SPACE)
    assert ran.returncode == 0, ran.stderr
    assert f"{SAMPLE_STORIES} new stories" in ran.stdout
    assert ran.peak_mb < 300, f"peak RSS {ran.peak_mb:.0f} MB"


def test_a_gzip_bomb_is_cut_by_its_decoded_size(newsroom: Path, hostile: str) -> None:
    url = f"{hostile}/gzip-bomb"
    set_up(newsroom, feeds=[url, str(SAMPLE_FEED)])
    ran = digest(newsroom, "collect", memory=ADDRESS_SPACE)
    assert ran.errors == [
        f"error: {url}: response is over 20 MB ([limits] fetch_max_bytes); skipped"
    ], ran.stderr
    assert f"{SAMPLE_STORIES} new stories" in ran.stdout
    assert ran.peak_mb < 300, f"peak RSS {ran.peak_mb:.0f} MB"


def test_a_local_file_over_the_cap_and_a_device_are_refused_before_reading(
    newsroom: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.xml"
    big.write_text(rss(item("Big", "https://news.example.org/big/", extra=" " * 200_000)))
    set_up(newsroom, "fetch_max_bytes = 100_000", feeds=["/dev/zero", str(big), str(SAMPLE_FEED)])
    ran = digest(newsroom, "collect", timeout=60, memory=ADDRESS_SPACE)
    assert ran.errors == [
        "error: /dev/zero: not a file (a folder or a device); check the path",
        f"error: {big}: file is over 100 kB ([limits] fetch_max_bytes); skipped",
    ], ran.stderr
    assert f"{SAMPLE_STORIES} new stories" in ran.stdout


def test_redirects_are_bounded(hostile: str) -> None:
    from digest.collect.feeds import read_feed

    with pytest.raises(InputError, match=r"/loop: more than 10 redirects; check the URL$"):
        read_feed(f"{hostile}/loop")


# -- case 5: deadlines ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["drip", "drip-headers"])
def test_a_dripping_server_is_cut_at_the_source_deadline_and_the_rest_is_read(
    newsroom: Path, hostile: str, path: str
) -> None:
    url = f"{hostile}/{path}"
    set_up(newsroom, "fetch_timeout = 5.0\nsource_deadline = 2.0", feeds=[url, str(SAMPLE_FEED)])
    ran = digest(newsroom, "collect", timeout=60)
    assert ran.errors == [
        f"error: {url}: not read within the source deadline of 2 s ([limits] source_deadline); "
        "skipped"
    ], ran.stderr
    assert f"{SAMPLE_STORIES} new stories" in ran.stdout
    # Start-up and the 2 s deadline; the server would drip for two minutes.
    assert ran.seconds < 20


def test_once_the_collect_deadline_has_passed_each_source_left_is_one_line(
    newsroom: Path, hostile: str
) -> None:
    drip = f"{hostile}/drip"
    tests = Path(__file__).parent / "data"
    cms = str(tests / "cms" / "jsonfeed-1.1.json")
    page = str(tests / "pages" / "ferry-budget.html")
    views = str(SAMPLE / "pageviews.csv")
    set_up(
        newsroom,
        "source_deadline = 2.0\ncollect_deadline = 1.0",
        feeds=[drip, str(SAMPLE_FEED)],
        cms=[cms],
        pages=[page],
        pageviews=[views],
    )
    ran = digest(newsroom, "collect", timeout=60)
    late = "skipped: the collect deadline of 1 s ([limits] collect_deadline) passed"
    assert ran.errors == [
        f"error: {drip}: not read within the source deadline of 2 s ([limits] source_deadline); "
        "skipped",
        f"error: {SAMPLE_FEED}: {late}",
        f"error: {cms}: {late}",
        f"error: {page}: {late}",
        f"error: {views}: {late}",
    ], ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.returncode == 1
    assert "0 new stories" in ran.stdout and "5 sources could not be read" in ran.stdout
    assert ran.seconds < 20


# -- case 5: stored fields capped, in one place, for every kind of source -----------------

LONG = {
    "title": words(5_000, "title"),
    "dek": words(2 * MB, "dek"),
    "byline": words(1_000, "name"),
    "section": words(1_000, "section"),
    "caption": words(5_000, "caption"),
    "credit": words(1_000, "credit"),
}


def _long_feed(folder: Path) -> str:
    path = folder / "long.xml"
    picture = (
        '<media:content url="https://news.example.org/a.jpg" medium="image">'
        f"<media:description>{LONG['caption']}</media:description>"
        f"<media:credit>{LONG['credit']}</media:credit></media:content>"
    )
    extra = (
        f"<description>{LONG['dek']}</description><dc:creator>{LONG['byline']}</dc:creator>"
        f"<category>{LONG['section']}</category>{picture}"
    )
    path.write_text(rss(item(LONG["title"], "https://news.example.org/long/", extra=extra)))
    return str(path)


def _long_cms(folder: Path) -> str:
    path = folder / "long.json"
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Test",
        "items": [
            {
                "id": "1",
                "url": "https://news.example.org/long/",
                "title": LONG["title"],
                "summary": LONG["dek"],
                "authors": [{"name": LONG["byline"]}],
                "tags": [LONG["section"]],
                "image": "https://news.example.org/a.jpg",
                "date_published": "2025-12-04T20:00:00-09:00",
            }
        ],
    }
    path.write_text(json.dumps(feed))
    return str(path)


def _long_page(folder: Path) -> str:
    path = folder / "long.html"
    article = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": LONG["title"],
        "description": LONG["dek"],
        "author": {"@type": "Person", "name": LONG["byline"]},
        "articleSection": LONG["section"],
        "datePublished": "2025-12-04T20:00:00-09:00",
        "image": {
            "@type": "ImageObject",
            "url": "https://news.example.org/a.jpg",
            "caption": LONG["caption"],
            "creditText": LONG["credit"],
        },
    }
    path.write_text(
        '<!DOCTYPE html><html><head><link rel="canonical" href="https://news.example.org/long/">'
        f'<script type="application/ld+json">{json.dumps(article)}</script></head>'
        "<body><p>The story.</p></body></html>"
    )
    return str(path)


def _is_cut(value: str, original: str, limit: int) -> bool:
    """Within `limit`, ends in "…", and what is kept ends where a word of `original` does."""
    kept = value.removesuffix("…")
    return (
        len(value) <= limit
        and value.endswith("…")
        and original.startswith(kept)
        and original[len(kept)] == " "
    )


@pytest.mark.parametrize(
    ("kind", "write"), [("feeds", _long_feed), ("cms", _long_cms), ("pages", _long_page)]
)
def test_every_stored_field_is_cut_at_a_word_to_its_cap_whatever_the_source(
    newsroom: Path, store: Store, tmp_path: Path, kind: str, write: Callable[[Path], str]
) -> None:
    set_up(newsroom)
    settings = load(newsroom)
    kinds: dict[str, list[str]] = {"feeds": [], "cms": [], "pages": [], "pageviews": []}
    kinds[kind] = [write(tmp_path)]
    result = collect_all(settings, store, **kinds)
    assert (result.new, result.failed_sources) == (1, [])
    (story,) = store.stories.stories_between(
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2025, 12, 9, tzinfo=UTC)
    )
    assert _is_cut(story.title, LONG["title"], 300), story.title
    assert _is_cut(story.dek, LONG["dek"], 1_000)
    assert _is_cut(story.byline, LONG["byline"], 200)
    assert _is_cut(story.section, LONG["section"], 200)  # the width of its column
    assert story.image_url == "https://news.example.org/a.jpg"
    if kind != "cms":  # a JSON Feed item has no caption or credit
        assert _is_cut(story.image_caption, LONG["caption"], 500)
        assert _is_cut(story.image_credit, LONG["credit"], 200)


def test_a_story_url_over_the_cap_is_skipped_and_a_picture_url_drops_the_picture(
    newsroom: Path, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_path = "https://news.example.org/" + "a" * 2_100
    feed = tmp_path / "urls.xml"
    picture = f'<media:content url="{long_path}.jpg" medium="image"/>'
    feed.write_text(
        rss(
            item("Long link", long_path),
            item("Long picture", "https://news.example.org/picture/", extra=picture),
        )
    )
    set_up(newsroom)
    result = collect_all(load(newsroom), store, feeds=[str(feed)], pageviews=[])
    assert result.new == 1
    (story,) = store.stories.stories_between(
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2025, 12, 9, tzinfo=UTC)
    )
    assert (story.title, story.image_url) == ("Long picture", "")
    # [limits] url_max_chars is 2,000 by default, the store's URL column.
    assert messages(caplog, logging.WARNING) == [
        f"{feed}: story 'Long link': its URL is over 2,000 characters ([limits] "
        "url_max_chars); skipped (a cut URL is a broken link)",
        f"{feed}: story 'Long picture': its picture's URL is over 2,000 characters "
        "([limits] url_max_chars); kept without the picture",
    ]


def test_a_page_view_url_over_the_cap_is_left_out_with_one_line(
    newsroom: Path, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    views = tmp_path / "views.csv"
    views.write_text(
        "date,url,pageviews\n"
        "2025-12-04,https://news.example.org/a/,10\n"
        f"2025-12-04,https://news.example.org/{'b' * 2_100}/,20\n"
    )
    set_up(newsroom, "url_max_chars = 1_000")
    result = collect_all(load(newsroom), store, feeds=[], pageviews=[str(views)])
    assert (result.pageview_rows, result.failed_sources) == (1, [])
    assert messages(caplog, logging.WARNING) == [
        f"{views}: 1 rows with a URL over 1,000 characters ([limits] url_max_chars); skipped"
    ]


def test_a_50_mb_description_is_refused_and_a_5_mb_one_stored_cut_so_the_edition_renders(
    newsroom: Path, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.xml"
    head, tail = rss("@@").split("@@")
    with huge.open("w") as out:
        out.write(head + item("Fifty megabytes", "https://news.example.org/50/", extra="@@"))
        out.seek(out.tell() - len("@@</item>"))
        out.write("<description>")
        for _ in range(50):
            out.write("y " * (MB // 2))
        out.write("</description></item>" + tail)
    big = tmp_path / "big.xml"
    five = words(5 * MB, "five")
    big.write_text(
        rss(
            item(
                "Five megabytes",
                "https://news.example.org/5/",
                extra=f"<description>{five}</description>",
            ),
            item("An ordinary story", "https://news.example.org/ordinary/"),
        )
    )
    set_up(newsroom, feeds=[str(huge), str(big)])
    ran = digest(newsroom, "collect", timeout=120, memory=2 * ADDRESS_SPACE)
    assert ran.errors == [
        f"error: {huge}: file is over 20 MB ([limits] fetch_max_bytes); skipped"
    ], ran.stderr
    story = stored(newsroom)["Five megabytes"]
    assert _is_cut(story.dek, five, 1_000)

    drafted = digest(newsroom, "draft", "--date", "2025-12-05", timeout=120)
    assert drafted.returncode == 0, drafted.stderr
    rendered = digest(newsroom, "render", "2025-12-05", "--out", "out", timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    html = (newsroom / "out" / "2025-12-05.html").read_text(encoding="utf-8")
    assert "Five megabytes" in html and story.dek.removesuffix("…").split()[-1] in html
