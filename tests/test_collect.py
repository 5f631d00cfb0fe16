"""collect: the sample feed and real feeds from the wild, normalised into stories."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.collect import collect_all
from digest.collect.feeds import parse_feed, read_feed
from digest.collect.pageviews import read_pageviews
from digest.collect.urls import canonical_url
from digest.config import Settings
from digest.errors import InputError
from digest.store import Store

DATA = Path(__file__).parent / "data" / "feeds"
LEAD = "Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage"


def test_sample_feed_normalises_every_field(settings: Settings) -> None:
    stories = {s.title: s for s in read_feed(settings.sources.feeds[0])}
    assert len(stories) == 11
    lead = stories[LEAD]
    assert lead.url == (
        "https://news.example.org/news/"
        "trump-to-meet-putin-at-joint-base-elmendorf-richardson-in-anchorage/"
    )
    assert (
        lead.dek
        == "Trump was expected to make what amounted to a day trip to Alaska to meet with Putin."
    )
    assert lead.byline == "The New York Times"
    assert lead.section == "Politics"
    assert lead.image_credit == "Doug Mills/The New York Times"
    assert lead.image_caption.startswith("President Donald Trump and President Vladimir Putin")
    assert "(Doug Mills" not in lead.image_caption
    assert lead.image_url.startswith("file://") and lead.image_url.endswith(".jpg")
    assert lead.published_at.tzinfo == UTC
    assert lead.prominence == 1.0
    # Tracking parameters in the feed's links are gone.
    assert all("utm_" not in s.url and "fbclid" not in s.url for s in stories.values())
    # The caption with markup inside the page keeps its characters, loses its tags.
    author = next(s for s in stories.values() if s.title.startswith("Author calls"))
    assert "Ḵunéix̱ Hídi" in author.image_caption
    assert "<strong>" not in author.image_caption


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://News.Example.org/a/?utm_source=rss&id=7#top", "https://news.example.org/a/?id=7"),
        ("https://news.example.org/a?fbclid=xyz", "https://news.example.org/a"),
        (
            "http://news.example.org:80/a?gclid=1&mc_cid=2&page=2",
            "http://news.example.org/a?page=2",
        ),
    ],
)
def test_canonical_url_strips_tracking(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_collecting_twice_updates_what_changed_and_never_duplicates(
    settings: Settings, store: Store
) -> None:
    first = collect_all(settings, store)
    second = collect_all(settings, store)
    assert (first.new, first.updated) == (26, 0)  # the day's feed (11) and the archive (15)
    # The same feeds again: nothing changed, so nothing is "updated" (issue 12, item 1).
    assert (second.new, second.updated) == (0, 0)
    assert store.stories.count_stories() == 26
    # One headline corrected at the source: that story, and only it, is updated.
    feed = Path(settings.sources.feeds[0])  # the newsroom's copy, in a temporary folder
    text = feed.read_text()
    title = text.split("<item>")[1].split("<title>")[1].split("</title>")[0]
    feed.write_text(text.replace(title, title + " (corrected)", 1))
    third = collect_all(settings, store)
    assert (third.new, third.updated) == (0, 1)
    assert store.stories.count_stories() == 26


def test_a_bad_feed_is_one_line_and_the_rest_goes_on(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broken = str(DATA / "unrecognized.rss")
    result = collect_all(settings, store, feeds=[broken, *settings.sources.feeds], pageviews=[])
    assert result.failed_sources == [broken]
    assert result.new == 26
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "unrecognized.rss" in errors[0] and "not a readable RSS or Atom feed" in errors[0]


def test_missing_file_names_the_path() -> None:
    with pytest.raises(InputError, match=r"nowhere\.xml: cannot read"):
        read_feed("/nowhere.xml")


def test_entry_without_link_or_with_javascript_link_is_skipped_with_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><title>No link here</title><pubDate>Thu, 04 Dec 2025 10:00:00 -0900</pubDate></item>
    <item><title>Evil</title><link>javascript:alert(1)</link></item>
    <item><title>Fine &lt;script&gt;alert(1)&lt;/script&gt;</title><link>https://x.example.org/ok</link>
    <pubDate>Thu, 04 Dec 2025 10:00:00 -0900</pubDate></item>
    </channel></rss>"""
    stories = parse_feed(feed, "test.xml", "file:///tmp/test.xml")
    assert [s.url for s in stories] == ["https://x.example.org/ok"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("test.xml: entry 1 ('No link here'): no link" in m for m in messages)
    assert any(
        "test.xml: entry 2 ('Evil'): link 'javascript:alert(1)' is not http(s)" in m
        for m in messages
    )


def test_real_guardian_feed_gives_images_credits_and_bylines() -> None:
    stories = read_feed(str(DATA / "guardian.rss"))
    assert len(stories) == 55
    with_credit = [s for s in stories if s.image_url and s.image_credit]
    assert len(with_credit) > 40
    assert all(s.url.startswith("https://www.theguardian.com/") for s in stories)
    assert all(s.byline for s in stories[:10])


def test_real_feeds_in_odd_encodings_and_atom_are_read() -> None:
    assert len(read_feed(str(DATA / "heise.atom"))) == 15
    assert len(read_feed(str(DATA / "lanacion.xml"))) == 100
    uol = read_feed(str(DATA / "uolNoticias.rss"))  # ISO-8859-1 bytes declared as UTF-8
    assert len(uol) == 15
    assert any("ç" in s.title for s in uol)


def test_an_html_page_is_not_a_feed() -> None:
    with pytest.raises(InputError, match=r"DaringFireball\.html: not a readable RSS or Atom feed"):
        read_feed(str(DATA / "DaringFireball.html"))


def test_feed_over_http_from_a_local_server(http_server: str) -> None:
    stories = read_feed(f"{http_server}/examples/sample-newsroom/feed.xml?utm_source=x")
    assert len(stories) == 11
    # Relative image URLs resolve against where the feed came from.
    assert stories[0].image_url.startswith(http_server + "/examples/sample-newsroom/images/")


def test_http_error_is_one_clear_line(http_server: str) -> None:
    with pytest.raises(InputError, match=r"HTTP 404; check the URL"):
        read_feed(f"{http_server}/missing.xml")


def test_pageviews_merge_tracking_variants_and_skip_bad_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zoneinfo import ZoneInfo

    csv = tmp_path / "views.csv"
    csv.write_text(
        "date,url,pageviews\n"
        "2025-12-04,https://news.example.org/a/,100\n"
        "2025-12-04,https://news.example.org/a/?utm_source=nl,20\n"
        "2025-12-04,https://news.example.org/b/,lots\n"
        "20251205,https://news.example.org/b/,7\n",
        encoding="utf-8",
    )
    rows = read_pageviews(str(csv), ZoneInfo("America/Juneau"))
    assert [(r.url, r.day.isoformat(), r.views) for r in rows] == [
        ("https://news.example.org/a/", "2025-12-04", 100),
        ("https://news.example.org/a/", "2025-12-04", 20),
        ("https://news.example.org/b/", "2025-12-05", 7),
    ]
    assert any("views.csv: line 4: skipped" in r.getMessage() for r in caplog.records)


def test_pageviews_without_url_column_names_the_file_and_line(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    csv = tmp_path / "ga.csv"
    csv.write_text("when,count\n2025-12-04,3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ga.csv: line 1 names no url column or no views"):
        read_pageviews(str(csv), ZoneInfo("UTC"))


def test_stories_store_times_in_utc(settings: Settings, store: Store) -> None:
    collect_all(settings, store)
    window = store.stories.stories_between(
        datetime(2025, 12, 4, 15, 0, tzinfo=UTC), datetime(2025, 12, 5, 15, 0, tzinfo=UTC)
    )
    assert len(window) == 10
    assert all(s.published_at.tzinfo == UTC for s in window)


# The date rule's one line, the same for feeds, CMS posts and pages (issue 8, case 7).
NO_DATE = "no valid publish date; skipped (a story without a date has no day's edition)"


def test_an_entry_without_a_valid_date_is_skipped_never_dated_now(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed = tmp_path / "dates.xml"
    feed.write_text(
        """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
        <item><title>No date</title><link>https://x.example.org/none</link></item>
        <item><title>Bad date</title><link>https://x.example.org/bad</link>
        <pubDate>the day before yesterday</pubDate></item>
        <item><title>Dated</title><link>https://x.example.org/dated</link>
        <pubDate>Thu, 04 Dec 2025 10:00:00 -0900</pubDate></item>
        </channel></rss>""",
        encoding="utf-8",
    )
    assert [story.title for story in read_feed(str(feed))] == ["Dated"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{feed}: entry 1 ('No date'): {NO_DATE}",
        f"{feed}: entry 2 ('Bad date'): {NO_DATE}",
    ]


def test_a_date_with_its_day_and_month_named_in_portuguese_is_read() -> None:
    # UOL (Brazil): "Seg, 24 Set 2018 19:42:40 -0300", Monday 24 September.
    uol = read_feed(str(DATA / "uolNoticias.rss"))
    assert uol[0].published_at == datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)


# A page-view CSV source pointed at the wrong file: what it holds is someone's content.
NOT_CSV = {
    "passwd": b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    "html": b"<!DOCTYPE html>\n<html><head><title>Reader list</title></head>"
    b"<body>olivia@example.org</body></html>\n",
    "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "one huge field": b'"' + b"s" * 200_000 + b'"\n',
}


@pytest.mark.parametrize("kind", list(NOT_CSV))
def test_a_file_that_is_not_a_page_view_csv_is_one_line_that_never_echoes_it(
    settings: Settings, store: Store, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    views = tmp_path / "views.csv"
    views.write_bytes(NOT_CSV[kind])
    result = collect_all(settings, store, feeds=[], pageviews=[str(views)])
    assert result.failed_sources == [str(views)]
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    said = error.removeprefix(f"{views}: ")
    assert "expected a CSV whose first line names a url column (url, page," in said
    assert "and a views column (pageviews, views," in said
    for secret in ("root", "bash", "DOCTYPE", "Reader", "olivia", "PNG", "sss"):
        assert secret not in said, said
