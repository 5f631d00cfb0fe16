"""The email as a reader sees it: headless Chromium at phone and desktop widths."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import need

from digest import jobs
from digest.config import Settings
from digest.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
# Chromium's own update and sync traffic is refused on a closed network; keep it quiet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(Path(CHROMIUM).exists(), "Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def email_file(settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """The edition as mailed, its pictures served by `digest web` at [web] base_url, as a
    newsroom runs it (digest.media publishes the sample newsroom's local pictures)."""
    from test_web import serving

    from digest.web import create_app

    store = jobs.open_store(settings)
    with serving(create_app(settings, store)) as site:
        served = replace(settings, base_url=site)
        jobs.collect(served, store)
        edition = jobs.draft(served, store, date(2025, 12, 5))
        rendered = jobs.render_edition(served, store, edition.name)
        html_path, _ = jobs.write_edition(served, rendered, tmp_path / "out")
        yield html_path
    store.close()


@pytest.mark.parametrize(("width", "name"), [(375, "phone"), (1024, "desktop")])
def test_email_reads_well_at_phone_and_desktop_width(
    browser: Any, email_file: Path, width: int, name: str, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(email_file.as_uri())
    # Nothing sideways: a reader on a phone never scrolls horizontally.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    headline = page.locator("h1")
    assert headline.inner_text().startswith("Trump to meet Putin")
    assert headline.is_visible()
    # Every picture loads, from the web: the sample newsroom's local files are published.
    sources = page.evaluate("[...document.images].map(i => i.src)")
    assert sources and all(s.startswith("http://127.0.0.1:") for s in sources), sources
    broken = page.evaluate(
        "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == []
    body_width = page.evaluate("document.querySelector('h1').getBoundingClientRect().width")
    if name == "phone":
        # On a phone the columns stack: a More in News headline spans nearly the width.
        story = page.locator("a", has_text="Where to cut your Christmas tree").first
        assert story.bounding_box()["width"] > 0.6 * width  # type: ignore[index]
    else:
        # On a desktop the email keeps its 600px column, centred.
        assert body_width <= 600
        thumb = page.locator("img[alt*='spruce']").first
        text = page.locator("a", has_text="Where to cut your Christmas tree").first
        assert thumb.bounding_box()["x"] < text.bounding_box()["x"]  # type: ignore[index]
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    page.close()


@pytest.mark.parametrize("width", [375, 1024])
def test_a_reader_unsubscribes_in_the_browser(
    browser: Any, settings: Settings, store: Store, width: int
) -> None:
    """The footer link as a reader follows it: a page that fits, a button that works."""
    from test_web import serving

    from digest.models import Subscriber
    from digest.subscribers import unsubscribe_token
    from digest.web import create_app

    reader = "ana.lopez@example.com"
    store.upsert_subscribers([Subscriber(reader, "Ana Lopez")])
    with serving(create_app(settings, store)) as site:
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(f"{site}/unsubscribe/{unsubscribe_token(settings.secret_key, reader)}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert "Unsubscribe from the daily digest?" in page.locator("h1").inner_text()
        assert store.suppressed([reader]) == {}  # opening the page changed nothing
        button = page.get_by_role("button", name="Unsubscribe")
        assert button.is_visible()
        button.click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "You are unsubscribed"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.close()
    assert store.suppressed([reader]) == {reader: "unsubscribed"}
