"""The readers' archive of past editions and its RSS feed, on a real uvicorn server on
127.0.0.1, on SQLite and PostgreSQL: only editions that reached readers, newest first,
paged; the feed read back with feedparser; hostile subjects in both.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html import escape, unescape

import feedparser
import httpx
import pytest
from sqlalchemy import update
from test_web import serving

from digest import jobs
from digest.config import Settings
from digest.models import Edition, Recipient, RenderedEdition
from digest.store import Store, sends
from digest.web import create_app
from digest.web.archive import FEED_SIZE, PAGE_SIZE

FIRST = date(2025, 1, 1)
#: What a feed (and so a subject taken from its headline) may carry.
HOSTILE = (
    "<script>alert(\"x\")</script> & <b>bold</b> ]]> 'quoted' "
    "\x0bcontrol\x01chars <![CDATA[ no ]]> &amp; done"
)


def went_out(store: Store, day: date, subject: str, *, batch: str = "sent") -> None:
    """An edition with a stored copy and a send (begun at 14:00 UTC on its day) whose
    one batch ended in `batch`, as the send stage leaves them (tested in test_ledger)."""
    name = day.isoformat()
    at = datetime(day.year, day.month, day.day, 14, tzinfo=UTC)
    store.editions.save_edition(
        Edition(name, at, at - timedelta(days=1), at, subject, f"preheader of {name}", None)
    )
    store.editions.save_render(
        "",
        "fingerprint",
        RenderedEdition(
            name, subject, f"preheader of {name}", f"<title>{escape(subject)}</title>", "copy"
        ),
    )
    if batch:
        send_id = store.sends.create_send(name, "outbox", [[Recipient("ana@example.org")]])
        if batch != "pending":
            store.sends.finish_batch(send_id, 1, batch)
        with store.begin() as conn:  # as if it went out on its day, at its send time
            conn.execute(update(sends).where(sends.c.id == send_id).values(created_at=at))


@pytest.fixture
def site(settings: Settings, store: Store) -> Iterator[str]:
    with serving(create_app(settings, store)) as url:
        yield url


def listed(html: str) -> list[tuple[str, str]]:
    """(link, subject as shown) of every edition on an archive page."""
    return [
        (href, unescape(text))
        for href, text in re.findall(r'<a href="\./(editions/[^"]+)">([^<]*)</a></li>', html)
    ]


def test_only_editions_that_reached_readers_are_listed(
    site: str, settings: Settings, store: Store
) -> None:
    assert "No edition has gone out yet" in httpx.get(f"{site}/editions").text
    # The sample's edition, sent for real through the outbox.
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, date(2025, 12, 5))
    sent = jobs.send(settings, store, "2025-12-05")
    assert sent.state == "done"
    real = store.editions.load_edition("2025-12-05")
    assert real is not None
    went_out(store, date(2025, 12, 1), "An older edition")
    went_out(store, date(2025, 12, 2), "Every batch failed", batch="failed")
    went_out(store, date(2025, 12, 3), "A send that has not begun", batch="pending")
    went_out(store, date(2025, 12, 6), "A draft, tomorrow's", batch="")
    jobs.draft(settings, store, date(2025, 12, 7))

    page = httpx.get(f"{site}/editions")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert listed(page.text) == [
        ("editions/2025-12-05", real.subject),
        ("editions/2025-12-01", "An older edition"),
    ]
    assert "Friday, December 5, 2025" in page.text  # the date as the email writes it
    assert "<script" not in page.text
    assert "failed" not in page.text and "tomorrow" not in page.text
    for href, subject in listed(page.text):
        copy = httpx.get(f"{site}/{href}")
        assert copy.status_code == 200, href
        assert f"<title>{escape(subject)}</title>" in copy.text, href
    missing = httpx.get(f"{site}/editions/2025-12-06")
    assert missing.status_code == 404 and "tomorrow" not in missing.text
    assert 'href="../editions">past editions</a>' in missing.text
    assert "Past editions" in httpx.get(f"{site}/editions").text


def test_pages_of_the_archive(site: str, store: Store) -> None:
    days = [FIRST + timedelta(days=i) for i in range(2 * PAGE_SIZE + 5)]
    for day in days:
        went_out(store, day, f"Edition of {day:%B %-d}")
    newest_first = [f"editions/{d.isoformat()}" for d in reversed(days)]

    seen: list[str] = []
    for number in (1, 2, 3):
        page = httpx.get(f"{site}/editions", params={} if number == 1 else {"page": number})
        assert page.status_code == 200
        assert f"page {number} of 3" in page.text
        seen += [href for href, _ in listed(page.text)]
        assert ('rel="next"' in page.text) == (number < 3)
        assert ('rel="prev"' in page.text) == (number > 1)
    assert seen == newest_first
    assert 'rel="next" href="./editions?page=3"' in httpx.get(f"{site}/editions?page=2").text
    assert 'rel="prev" href="./editions"' in httpx.get(f"{site}/editions?page=2").text
    for odd in ("4", "0", "-1", "two", "1e3", "", "١"):
        missing = httpx.get(f"{site}/editions", params={"page": odd})
        assert missing.status_code == 404, odd
        assert 'href="./editions"' in missing.text


def test_the_feed_validates_and_says_what_went_out(
    site: str, settings: Settings, store: Store
) -> None:
    days = [FIRST + timedelta(days=i) for i in range(FEED_SIZE + 3)]
    for day in days:
        went_out(store, day, f"Edition of {day:%B %-d}")
    went_out(store, days[-1] + timedelta(days=1), "Not yet", batch="pending")

    answer = httpx.get(f"{site}/editions/feed.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/rss+xml; charset=utf-8"
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert feed.feed.title == f"{settings.newsroom.name} daily digest"
    assert feed.feed.link == f"{settings.base_url}/editions"
    assert len(feed.entries) == FEED_SIZE
    newest = list(reversed(days))[:FEED_SIZE]
    for entry, day in zip(feed.entries, newest, strict=True):
        url = f"{settings.base_url}/editions/{day.isoformat()}"
        assert entry.title == f"Edition of {day:%B %-d}"
        assert entry.link == url and entry.id == url
        assert entry.published_parsed[:5] == (day.year, day.month, day.day, 14, 0)
        assert entry.summary == f"preheader of {day.isoformat()}"
    assert answer.text.count('<guid isPermaLink="true">') == FEED_SIZE
    self_link = [link for link in feed.feed.links if link.rel == "self"]
    assert self_link and self_link[0].href == f"{settings.base_url}/editions/feed.xml"


def test_hostile_subjects_are_text_in_the_page_and_the_feed(
    settings: Settings, store: Store
) -> None:
    served = replace(settings, base_url="https://digest.example.org/news&co")
    went_out(store, FIRST, HOSTILE)
    went_out(store, FIRST + timedelta(days=1), "Fine & dandy")
    with serving(create_app(served, store)) as site:
        page = httpx.get(f"{site}/editions").text
        body = httpx.get(f"{site}/editions/feed.xml").content

    assert "<script>" not in page and "<b>" not in page and "<![CDATA" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold" in page
    assert [subject for _, subject in listed(page)] == ["Fine & dandy", HOSTILE]

    # Well-formed XML: the strict parser reads it, and the subject is one text node.
    titles = [t.text for t in ET.fromstring(body).iter("title")]
    readable = HOSTILE.replace("\x0b", "").replace("\x01", "")
    assert titles[1:] == ["Fine & dandy", readable]
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    # feedparser keeps a title as text (it does not run markup): the same words come back.
    assert [e.title for e in feed.entries] == ["Fine & dandy", readable]
    assert feed.entries[1].link == "https://digest.example.org/news&co/editions/2025-01-01"
    assert b"<script>" not in body and b"<b>" not in body
