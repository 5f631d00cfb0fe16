"""collect.pagemeta and collect.bylines: real pages' metadata, cleaned, one rule a test.

Each page here is a few lines written to show one rule; the real pages are measured
in tests/test_collect_fundus.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml.html import fromstring

from digest.collect.bylines import clean_byline, clean_names, join_names
from digest.collect.pagemeta import PageMeta, read_meta
from digest.collect.pages import read_page
from digest.config import Settings
from digest.models import Edition, Pick, Story
from digest.render import render

BASE = "https://news.example.org/fetched/"


def _meta(head: str, body: str = "<p>Words.</p>", base: str = BASE) -> PageMeta:
    from trafilatura import load_html

    tree = load_html(f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>")
    return read_meta(tree, base)


def _ld(node: str) -> str:
    return f'<script type="application/ld+json">{node}</script>'


def _article(more: str) -> str:
    """A JSON-LD NewsArticle with headline "H" and the properties in `more`."""
    return _ld('{"@type": "NewsArticle", "headline": "H", ' + more + "}")


_AT_NOON = '"datePublished": "2025-12-04T12:00:00Z"'


# -- the headline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "headline"),
    [
        # <title> with the site's name from og:site_name, each separator.
        (
            '<meta property="og:site_name" content="The Hill">'
            "<title>Senate votes | TheHill</title>",
            "Senate votes",
        ),
        ('<meta property="og:site_name" content="IGN"><title>Zelda - IGN</title>', "Zelda"),
        (
            '<meta property="og:site_name" content="Juneau Empire">'
            "<title>Tides turn — Juneau Empire</title>",
            "Tides turn",
        ),
        (
            '<meta name="application-name" content="Daily Planet">'
            '<meta property="og:title" content="Heat wave :: Daily Planet">',
            "Heat wave",
        ),
        # The host names the site: Globalnews.ca, and the section next to it goes too.
        (
            '<link rel="canonical" href="https://globalnews.ca/news/1/">'
            '<meta property="article:section" content="National">'
            "<title>Missiles hit Kyiv - National | Globalnews.ca</title>",
            "Missiles hit Kyiv",
        ),
        # A part that is not the site's name is the headline's own.
        ("<title>Two resign - and many questions</title>", "Two resign - and many questions"),
        # The site's name first.
        ('<meta property="og:site_name" content="KTOO"><title>KTOO | Rain</title>', "Rain"),
        # The JSON-LD headline over og:title and <title>, also cleaned.
        (
            '<meta property="og:title" content="Social title"><title>Page | Site</title>'
            + _ld('{"@type": "NewsArticle", "headline": "The headline | Site",'
                  ' "publisher": {"@type": "Organization", "name": "Site"}}'),
            "The headline",
        ),
    ],
)  # fmt: skip
def test_the_headline_without_the_site_name(head: str, headline: str) -> None:
    assert _meta(head).title == headline


def test_the_headline_the_page_shows_and_shares_beats_the_search_one() -> None:
    head = '<meta property="og:title" content="One hundred years at the Coliseum">' + _ld(
        '{"@type": "NewsArticle", "headline": "100 years at the Los Angeles Coliseum"}'
    )
    shown = _meta(head, "<h1>One hundred years at the Coliseum</h1>")
    assert shown.title == "One hundred years at the Coliseum"
    # og:title that is not the page's <h1> is a social title: the JSON-LD one stands.
    social = _meta(head, "<h1>Another headline</h1>")
    assert social.title == "100 years at the Los Angeles Coliseum"


# -- the section -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "section"),
    [
        ('<meta property="article:section" content="Local Government">', "Local Government"),
        ('<meta property="article:section" content="Uncategorized">', ""),
        ('<meta property="article:section" content="post">', ""),
        ('<meta property="article:section" content="All">'
         + _article('"articleSection": ["Sports", "All"]'), "Sports"),
        (_article('"articleSection": "Global,Innovation"'), "Global"),
        ('<meta property="article:section" content="News">', "News"),
        # Links to category pages are not section metadata.
        ('<title>H</title>', ""),
    ],
)  # fmt: skip
def test_the_section_only_from_section_metadata(head: str, section: str) -> None:
    body = '<p><a href="/category/post/" rel="category tag">post</a> Words.</p>'
    assert _meta(head, body).section == section


# -- the address -------------------------------------------------------------------------


def test_canonical_over_og_url_unless_it_is_a_front_page() -> None:
    canonical = '<link rel="canonical" href="https://news.example.org/news/story/?utm_source=x">'
    og_url = '<meta property="og:url" content="https://news.example.org/amp/story/">'
    assert _meta(og_url + canonical).url == "https://news.example.org/news/story/"
    front = '<link rel="canonical" href="https://www.othersite.com/">'
    assert _meta(front + og_url).url == "https://news.example.org/amp/story/"
    assert _meta(front).url == BASE
    assert _meta('<link rel="canonical" href="/">').url == BASE
    assert _meta('<link rel="canonical" href="/news/relative/">').url == (
        "https://news.example.org/news/relative/"
    )


# -- the publication time ----------------------------------------------------------------

_NOON_UTC = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "head_and_body",
    [
        # JSON-LD: a later block, and an @graph.
        (_ld('{"@type": "BreadcrumbList", "itemListElement": []}')
         + _article(_AT_NOON), ""),
        (_ld('{"@graph": [{"@type": "WebSite", "name": "S"}, {"@type": "WebPage",'
             ' "datePublished": "2025-12-04T03:00:00-09:00"}]}'), ""),
        # The article has no date; another block about the same page has.
        ('<link rel="canonical" href="https://news.example.org/a/">'
         + _ld('{"@type": "NewsArticle", "headline": "H"}')
         + _ld('{"@type": "WebPage", "@id": "https://news.example.org/a/#page",'
               ' "url": "https://news.example.org/a/", ' + _AT_NOON + "}"), ""),
        ('<meta property="article:published_time" content="2025-12-04T12:00:00+00:00">', ""),
        # Microdata, itemprop a list of names.
        ("", '<span itemprop="datePublished dateModified" content="2025-12-04T12:00:00Z">4</span>'),
        ("", '<meta itemprop="dateModified datePublished" content="2025-12-04T12:00:00Z">'),
        # <time>: pubdate, the article's first, the page's only one.
        ("", '<time pubdate datetime="2025-12-04T12:00:00Z">Dec 4</time>'),
        ("", '<aside><time datetime="2024-01-01T00:00:00Z">x</time></aside>'
             '<article><time datetime="2025-12-04T12:00:00Z">Dec 4</time></article>'),
        ("", '<p>Posted <time datetime="2025-12-04T04:00:00-08:00">Dec 4</time></p>'),
    ],
)  # fmt: skip
def test_the_publication_time_from_every_place_a_page_gives_it(
    head_and_body: tuple[str, str],
) -> None:
    head, body = head_and_body
    assert _meta("<title>H</title>" + head, body or "<p>Words.</p>").published == _NOON_UTC


def test_the_order_json_ld_then_meta_then_microdata_then_time() -> None:
    article = _article(_AT_NOON)
    meta = '<meta property="article:published_time" content="2025-12-04T13:00:00Z">'
    microdata = '<span itemprop="datePublished" content="2025-12-04T14:00:00Z"></span>'
    time = '<article><time datetime="2025-12-04T15:00:00Z">x</time></article>'
    assert _meta(article + meta, microdata + time).published == _NOON_UTC
    assert _meta(meta, microdata + time).published == _NOON_UTC.replace(hour=13)
    assert _meta("", microdata + time).published == _NOON_UTC.replace(hour=14)
    assert _meta("", time).published == _NOON_UTC.replace(hour=15)
    # Two <time>s outside any <article>: neither is taken for the story's.
    two = '<time datetime="2025-12-04T15:00Z">x</time><time datetime="2025-12-01T01:00Z">y</time>'
    assert _meta("<title>H</title>", f"<p>{two}</p>").published is None


# -- bylines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "byline"),
    [
        ("By TOM KRISHER", "Tom Krisher"),
        ("BY: Jane Doe", "Jane Doe"),
        ("by jane doe", "jane doe"),
        ("admin", ""),
        ("Administrator", ""),
        ("jane@example.org (Jane Doe)", "Jane Doe"),
        ("Jane Doe <jane@example.org>", "Jane Doe"),
        ("news@example.org", ""),
        ("Samya Kullab and Vasilisa Stepanenko", "Samya Kullab and Vasilisa Stepanenko"),
        ("A One; B Two & C Three", "A One, B Two and C Three"),
        ("Mac & i", "Mac & i"),
        ("Username", ""),
        ("Jane Doe, Staff Writer", "Jane Doe, Staff Writer"),
        ("AFP", "AFP"),
        ("O'BRIEN SMITH", "O'Brien Smith"),
        ("https://www.facebook.com/someone", ""),
        ("朝日新聞デジタル", "朝日新聞デジタル"),
        ("Par Bertrand Bissuel", "Bertrand Bissuel"),
    ],
)
def test_bylines_are_cleaned(raw: str, byline: str) -> None:
    assert clean_byline(raw) == byline


def test_names_are_joined_in_the_newsroom_language_once_each() -> None:
    assert join_names(["A"]) == "A"
    assert join_names(["A", "B"]) == "A and B"
    assert join_names(["A", "B", "C"]) == "A, B and C"
    assert join_names(["A", "B", "C"], "es_US") == "A, B y C"
    assert clean_names(["Jane Doe", "JANE DOE", "By Jane Doe"]) == ["Jane Doe"]


def test_a_page_byline_from_json_ld_is_cleaned(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<!DOCTYPE html><html><head><title>H</title>'
        '<link rel="canonical" href="https://news.example.org/h/">'
        + _ld('{"@type": "NewsArticle", "headline": "H", "datePublished": "2025-12-04T12:00:00Z",'
              ' "author": [{"@type": "Person", "name": "By TOM KRISHER"},'
              ' {"@type": "Person", "name": "admin"}, "dee.ann@example.org (Dee-Ann Durbin)"]}')
        + "</head><body><p>Words.</p></body></html>",
        encoding="utf-8",
    )  # fmt: skip
    story = read_page(str(page))
    assert story is not None and story.byline == "Tom Krisher and Dee-Ann Durbin"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("Tom Krisher", "By Tom Krisher"),
        # Stored before bylines were cleaned: the template adds no second "By".
        ("By TOM KRISHER", "By TOM KRISHER"),
        ("BY: Jane Doe", "BY: Jane Doe"),
        ("Byron Stone", "By Byron Stone"),
    ],
)
def test_the_email_never_says_by_twice(settings: Settings, stored: str, shown: str) -> None:
    when = datetime(2025, 12, 5, 15, tzinfo=UTC)
    story = Story(url="https://news.example.org/s", title="S", published_at=when, byline=stored)
    edition = Edition(
        name="2025-12-05",
        send_at=when,
        window_start=when,
        window_end=when,
        subject="S",
        preheader="",
        lead=Pick(story, "lead", 1, 0.9),
        more=[],
        most_read=[],
    )
    out = render(settings, edition)
    html_lines = [" ".join(e.text_content().split()) for e in fromstring(out.html).iter("div")]
    assert shown in html_lines
    assert shown in out.text.splitlines()
    for part in (out.html, out.text):
        assert not re.search(r"\bby:?\s+by\b", part, re.IGNORECASE)
