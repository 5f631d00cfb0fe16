"""The email as a reader sees it: headless Chromium at phone and desktop widths."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, need

from digest import jobs
from digest.config import Settings
from digest.store import Store

EDITOR_PASSWORD = "correct horse battery staple"
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


@dataclass
class Mailed:
    """The demo edition sent through the outbox, with `digest web` serving its pictures
    and its "View in browser" copy, as a newsroom runs it."""

    settings: Settings
    site: str
    preview: Path  # the edition as `digest render` writes it (nobody's values filled)
    mailed: Path  # the HTML part of one reader's .eml, as a mail client gets it


@pytest.fixture(scope="module")
def mailed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailed]:
    from fakes.newsroom import DAY, SECRET, copy_newsroom
    from test_web import serving, with_env

    from digest import config
    from digest.web import create_app

    folder = tmp_path_factory.mktemp("mailed")
    settings = with_env(
        config.load(copy_newsroom(folder), env={"DIGEST_SECRET_KEY": SECRET}),
        DIGEST_EDITOR_PASSWORD=EDITOR_PASSWORD,
    )
    store = jobs.open_store(settings)
    with serving(create_app(settings, store)) as site:
        served = replace(settings, base_url=site)
        jobs.run(served, store, DAY)
        rendered = jobs.render_edition(served, store, DAY.isoformat())
        preview, _ = jobs.write_edition(served, rendered, folder / "out")
        eml = sorted((served.delivery.outbox_dir / DAY.isoformat()).glob("*.eml"))[0]
        message = message_from_bytes(eml.read_bytes(), policy=default_policy)
        mailed_html = folder / "mailed.html"
        mailed_html.write_text(message.get_body(("html",)).get_content(), encoding="utf-8")
        yield Mailed(served, site, preview, mailed_html)
    store.close()


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    axe = ROOT / "node_modules" / "axe-core" / "axe.min.js"
    need(axe.exists(), "axe-core is not installed (npm install)")
    page.add_script_tag(path=str(axe))
    found = page.evaluate("axe.run(document).then(r => r.violations)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(n["html"][:120] for n in v["nodes"][:3])
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def pictures(page: Any) -> tuple[list[str], list[str]]:
    """Every picture's address, and those that did not load."""
    page.wait_for_load_state("load")
    sources = page.evaluate("[...document.images].map(i => i.src)")
    broken = page.evaluate(
        "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    return sources, broken


@pytest.mark.parametrize(("width", "name"), [(375, "phone"), (1024, "desktop")])
def test_email_reads_well_at_phone_and_desktop_width(
    browser: Any, mailed: Mailed, width: int, name: str, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(mailed.preview.as_uri())
    # Nothing sideways: a reader on a phone never scrolls horizontally.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    headline = page.locator("h1")
    assert headline.inner_text().startswith("Trump to meet Putin")
    assert headline.is_visible()
    # Every picture loads, from the web: the sample newsroom's local files are published.
    sources, broken = pictures(page)
    assert sources and all(s.startswith(mailed.site + "/media/") for s in sources), sources
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


def test_pictures_load_in_the_mailed_copy_and_the_browser_copy(
    browser: Any, mailed: Mailed
) -> None:
    """The HTML part of a reader's .eml and the "View in browser" page: every picture an
    absolute http(s) address that loads."""
    page = browser.new_page(viewport={"width": 600, "height": 900})
    for address in (mailed.mailed.as_uri(), f"{mailed.site}/editions/2025-12-05"):
        assert page.goto(address).ok  # type: ignore[union-attr]
        sources, broken = pictures(page)
        assert len(sources) >= 8, (address, sources)
        assert all(s.startswith(mailed.site + "/media/") for s in sources), (address, sources)
        assert broken == [], address
    page.close()


#: Every visible text node: its colour and the first opaque background behind it, from
#: the computed styles, and their WCAG 2 contrast ratio (the formula of palette.py,
#: computed again here, independently).
CONTRAST_JS = """() => {
  const rgb = c => {
    const v = c.match(/[\\d.]+/g).map(Number);
    return {r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1};
  };
  const lin = x => (x /= 255) <= 0.04045 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
  const lum = c => 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  const behind = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.a > 0) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || !el.checkVisibility()) continue;
    const fg = lum(rgb(getComputedStyle(el).color)), bg = lum(behind(el));
    found.push({text: node.textContent.trim().slice(0, 50), link: !!el.closest('a'),
                ratio: (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05), background: bg});
  }
  return found;
}"""


def test_light_and_dark_differ_and_every_text_meets_wcag_aa(
    browser: Any, mailed: Mailed, tmp_path: Path
) -> None:
    shots = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme=scheme)
        page.goto(mailed.mailed.as_uri())
        page.wait_for_load_state("load")
        texts = page.evaluate(CONTRAST_JS)
        assert len(texts) > 40 and sum(t["link"] for t in texts) > 15, texts
        low = [(t["text"], round(t["ratio"], 2)) for t in texts if t["ratio"] < 4.5]
        assert low == [], f"{scheme}: under WCAG AA's 4.5:1: {low}"
        body = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
        assert body == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(30, 30, 30)")
        if scheme == "dark":
            # The logo, drawn for white paper, sits on a white plate, not a bare box.
            plate = page.evaluate(
                "(s => [s.backgroundColor, s.borderRadius])(getComputedStyle("
                "document.querySelector('.logo img')))"
            )
            assert plate == ["rgb(255, 255, 255)", "6px"]
        shots[scheme] = page.screenshot(full_page=True)
        (tmp_path / f"{scheme}.png").write_bytes(shots[scheme])
        page.close()
    assert shots["light"] != shots["dark"]


def test_axe_finds_nothing_serious_in_the_email_and_the_web_pages(
    browser: Any, mailed: Mailed
) -> None:
    from digest.subscribers import unsubscribe_token

    # bypass_csp: the pages forbid every script (rightly); axe is ours, injected to look.
    context = browser.new_context(
        viewport={"width": 375, "height": 800},
        http_credentials={"username": "anna", "password": EDITOR_PASSWORD},
        bypass_csp=True,
    )
    page = context.new_page()
    token = unsubscribe_token(mailed.settings.secret_key, "ana.lopez@example.com")
    found: list[str] = []
    for address in (
        mailed.mailed.as_uri(),
        f"{mailed.site}/editions/2025-12-05",
        f"{mailed.site}/editions",
        f"{mailed.site}/unsubscribe/{token}",
        f"{mailed.site}/unsubscribe/not-a-token",
        f"{mailed.site}/editor/2025-12-05",
        f"{mailed.site}/editor/editions",
        f"{mailed.site}/sends",
        f"{mailed.site}/sends/2025-12-05",
    ):
        page.goto(address)
        found.extend(f"{address}: {line}" for line in axe_violations(page))
    assert found == []
    context.close()


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
    store.subscribers.upsert_subscribers([Subscriber(reader, "Ana Lopez")])
    with serving(create_app(settings, store)) as site:
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(f"{site}/unsubscribe/{unsubscribe_token(settings.secret_key, reader)}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert "Unsubscribe from the daily digest?" in page.locator("h1").inner_text()
        assert store.subscribers.suppressed([reader]) == {}  # opening the page changed nothing
        button = page.get_by_role("button", name="Unsubscribe")
        assert button.is_visible()
        button.click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "You are unsubscribed"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.close()
    assert store.subscribers.suppressed([reader]) == {reader: "unsubscribed"}
