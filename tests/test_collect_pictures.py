"""Heavy pictures from other sites reach readers as email-sized copies (issue 11, item 1).

A real HTTP server on 127.0.0.1 plays the newsroom's image host; collect runs against it
with `[web] rehost_pictures_over_kb` on and off, and the rendered email is read back.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fakes.http import serving_http
from PIL import Image

from digest import config, jobs, media
from digest.errors import ConfigError
from digest.render import render
from digest.store import Store

NOW = datetime(2025, 12, 5, 5, 0, tzinfo=UTC)


def _jpeg(width: int, height: int) -> bytes:
    # Noise does not compress: a camera original's weight at a camera original's size.
    noise = random.Random(width).randbytes(width * height * 3)
    picture = Image.frombytes("RGB", (width, height), noise)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=95)
    return out.getvalue()


HEAVY = _jpeg(3000, 2000)
LIGHT = _jpeg(300, 200)
PICTURES = {"/heavy.jpg": HEAVY, "/light.jpg": LIGHT, "/page.jpg": b"<html>not a picture</html>"}


@pytest.fixture
def image_host() -> tuple[str, Counter[str]]:
    hits: Counter[str] = Counter()

    class Host(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            body = PICTURES.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    with serving_http(Host) as base:
        yield base, hits


def _feed(folder: Path, base: str) -> Path:
    items = "".join(
        f"""<item><title>Story with {name}</title><link>https://news.example.org/{n}</link>
        <pubDate>{(NOW - timedelta(hours=n + 1)).strftime("%a, %d %b %Y %H:%M:%S +0000")}</pubDate>
        <media:content url="{base}/{name}" medium="image" type="image/jpeg"/></item>"""
        for n, name in enumerate(["heavy.jpg", "light.jpg", "page.jpg", "gone.jpg"])
    )
    feed = folder / "pictures.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>Pictures</title><link>https://news.example.org/</link>{items}"
        "</channel></rss>"
    )
    return feed


def _settings(newsroom: Path, over_kb: int | None) -> config.Settings:
    toml = newsroom / "digest.toml"
    if over_kb is not None:
        toml.write_text(
            toml.read_text().replace("[web]\n", f"[web]\nrehost_pictures_over_kb = {over_kb}\n")
        )
    return config.load(toml, env={"DIGEST_SECRET_KEY": "test-secret"})


def _pictures(store: Store) -> dict[str, str]:
    stories = store.stories.stories_between(NOW - timedelta(days=1), NOW)
    return {s.title.removeprefix("Story with "): s.image_url for s in stories}


def test_heavy_pictures_are_kept_and_mailed_email_sized(
    newsroom: Path,
    store: Store,
    image_host: tuple[str, Counter[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, hits = image_host
    settings = _settings(newsroom, over_kb=200)
    assert len(HEAVY) > 200_000 > len(LIGHT)
    jobs.collect(settings, store, [str(_feed(newsroom, base))])

    found = _pictures(store)
    # The heavy original is kept under the data folder; the rest stay linked where they were.
    assert found["heavy.jpg"].startswith("file://")
    kept = Path(found["heavy.jpg"].removeprefix("file://"))
    assert kept.parent == settings.data_dir / "pictures" and kept.read_bytes() == HEAVY
    assert found["light.jpg"] == f"{base}/light.jpg"
    assert found["page.jpg"] == f"{base}/page.jpg"
    assert found["gone.jpg"] == f"{base}/gone.jpg"
    assert "gone.jpg not fetched, left linked" in caplog.text
    assert "page.jpg is not a PNG, JPEG, GIF or WebP picture" in caplog.text

    # What readers get: an https-able address under base_url, at most 1,200 px wide.
    story = next(
        s
        for s in store.stories.stories_between(NOW - timedelta(days=1), NOW)
        if s.image_url == found["heavy.jpg"]
    )
    address = media.Publisher(settings).web_address(story.image_url)
    assert re.fullmatch(re.escape(settings.base_url) + r"/media/[0-9a-f]{32}\.jpg", address)
    served, _ = media.published(settings, address.rsplit("/", 1)[1]) or (None, None)
    assert served is not None
    with Image.open(served) as copy:
        assert copy.width == media.LEAD_WIDTH
    assert served.stat().st_size < len(HEAVY) / 4

    # A second collect fetches nothing again: originals and light marks are kept by URL.
    before = sum(hits.values())
    jobs.collect(settings, store, [str(_feed(newsroom, base))])
    assert (
        sum(hits.values()) == before + hits["/gone.jpg"] - hits["/gone.jpg"] + 1
    )  # only the 404 again
    assert _pictures(store) == found


def test_the_rendered_email_links_the_copy_not_the_original(
    newsroom: Path, store: Store, image_host: tuple[str, Counter[str]]
) -> None:
    base, _ = image_host
    settings = _settings(newsroom, over_kb=200)
    jobs.collect(settings, store, [str(_feed(newsroom, base))])
    edition = jobs.draft(settings, store, NOW.date())
    html = render(settings, edition).html
    assert f"{base}/heavy.jpg" not in html and "file://" not in html
    assert re.search(re.escape(settings.base_url) + r"/media/[0-9a-f]{32}\.jpg", html)
    assert f"{base}/light.jpg" in html


def test_off_by_default_collect_fetches_no_picture(
    newsroom: Path, store: Store, image_host: tuple[str, Counter[str]]
) -> None:
    base, hits = image_host
    settings = _settings(newsroom, over_kb=None)
    assert settings.rehost_pictures_over_kb == 0
    jobs.collect(settings, store, [str(_feed(newsroom, base))])
    assert sum(hits.values()) == 0
    assert _pictures(store)["heavy.jpg"] == f"{base}/heavy.jpg"


def test_a_negative_threshold_is_a_settings_error(newsroom: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[web\] rehost_pictures_over_kb must be 0"):
        _settings(newsroom, over_kb=-1)
