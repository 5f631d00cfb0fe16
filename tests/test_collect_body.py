"""Story.body: each source's plain body text, kept across collects, capped, never mailed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from conftest import need
from lxml.html import fromstring
from pages_corpus import READABILITY, word_f1

from digest import config
from digest.collect import collect_all
from digest.collect.bodytext import html_body, plain_body
from digest.collect.caps import capped_stories
from digest.collect.cms import parse_cms
from digest.collect.feeds import parse_feed
from digest.collect.pages import read_page, read_pages
from digest.config import Limits, Settings
from digest.models import Story
from digest.rank import draft
from digest.render import render
from digest.store import Store

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
WHEN = datetime(2025, 12, 4, 18, 0, tzinfo=UTC)


# -- HTML to paragraphs -----------------------------------------------------------------


def test_markup_becomes_paragraphs_with_white_space_normalised() -> None:
    markup = (
        "<h2>Ferry  budget</h2><p>The Assembly voted&nbsp;7-2\n on   Thursday.<br>Late.</p>"
        "<script>track('x')</script><style>p {}</style><!-- a comment -->"
        "<ul><li>Auke Bay</li><li>Haines &amp; Skagway</li></ul>"
        "<div><p>Nested <b>bold</b> words</p></div>tail words"
    )
    assert html_body(markup) == (
        "Ferry budget\n\nThe Assembly voted 7-2 on Thursday.\nLate.\n\n"
        "Auke Bay\n\nHaines & Skagway\n\nNested bold words\n\ntail words"
    )
    # Text that carries no markup is text: its own blank lines are its paragraphs.
    assert html_body("One &amp; two\r\n\r\n\r\n  three   four ") == "One & two\n\nthree four"
    assert plain_body("a <b> c\n  \n\n d") == "a <b> c\n\nd"
    assert html_body("") == html_body("   ") == html_body("<p> </p>") == ""


# -- each source -------------------------------------------------------------------------

_FEED = """<?xml version="1.0"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>T</title><link>https://news.example.org/</link>
<item><title>Full text</title><link>https://news.example.org/a</link>
<pubDate>Thu, 04 Dec 2025 18:00:00 GMT</pubDate>
<description>The short summary.</description>
<content:encoded><![CDATA[<p>First paragraph.</p><p>Second <em>one</em>.</p>]]></content:encoded>
</item>
<item><title>Summary only</title><link>https://news.example.org/b</link>
<pubDate>Thu, 04 Dec 2025 18:00:00 GMT</pubDate>
<description>&lt;p&gt;Only the summary.&lt;/p&gt;&lt;p&gt;Two paragraphs.&lt;/p&gt;</description>
</item>
<item><title>Picture caption is no body</title><link>https://news.example.org/c</link>
<pubDate>Thu, 04 Dec 2025 18:00:00 GMT</pubDate>
<description>What the story is.</description>
<media:content url="https://news.example.org/c.jpg" medium="image">
<media:description>A ferry at the dock.</media:description></media:content>
</item>
</channel></rss>"""

_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:t</id>
<updated>2025-12-04T18:00:00Z</updated>
<entry><title>Atom html</title><id>urn:1</id><link href="https://news.example.org/d"/>
<updated>2025-12-04T18:00:00Z</updated><summary>Short.</summary>
<content type="html">&lt;p&gt;Atom body.&lt;/p&gt;&lt;p&gt;More.&lt;/p&gt;</content></entry>
<entry><title>Atom text</title><id>urn:2</id><link href="https://news.example.org/e"/>
<updated>2025-12-04T18:00:00Z</updated>
<content type="text">Plain a &lt; b.

Next.</content></entry>
</feed>"""


def test_feeds_take_content_encoded_then_the_summary_never_a_caption() -> None:
    rss = {s.title: s for s in parse_feed(_FEED.encode(), "feed", "https://news.example.org/")}
    assert rss["Full text"].body == "First paragraph.\n\nSecond one."
    assert rss["Full text"].dek == "The short summary."
    assert rss["Summary only"].body == "Only the summary.\n\nTwo paragraphs."
    # feedparser files <media:description> as text/plain content: the caption, not the body.
    assert rss["Picture caption is no body"].image_caption == "A ferry at the dock."
    assert rss["Picture caption is no body"].body == "What the story is."
    atom = {s.title: s for s in parse_feed(_ATOM.encode(), "atom", "https://news.example.org/")}
    assert atom["Atom html"].body == "Atom body.\n\nMore."
    assert atom["Atom text"].body == "Plain a < b.\n\nNext."


def test_the_sample_feed_and_a_real_feed_give_their_full_text() -> None:
    sample = parse_feed(
        (ROOT / "examples" / "sample-newsroom" / "feed.xml").read_bytes(), "s", "file:///s"
    )
    summit = next(s for s in sample if "Putin" in s.title)
    assert summit.body.startswith("WASHINGTON — President Donald Trump will meet")
    assert summit.body.count("\n\n") >= 5 and "<p>" not in summit.body
    guardian = parse_feed((DATA / "feeds" / "guardian.rss").read_bytes(), "g", "https://g/")
    assert all(story.body for story in guardian)
    assert not any(re.search(r"<[a-z/]", story.body) for story in guardian)


def test_wordpress_content_rendered_and_json_feed_content() -> None:
    posts = parse_cms((DATA / "cms" / "wordpress-posts.json").read_bytes(), "wp", "https://x/")
    assert posts[0].body == "The Assembly voted 7-2 on Thursday night."
    # A post whose content is "" (password-protected) has its excerpt.
    protected = [
        {
            "link": "https://news.example.org/p",
            "title": {"rendered": "Members only"},
            "date_gmt": "2025-12-04T18:00:00",
            "content": {"rendered": "", "protected": True},
            "excerpt": {"rendered": "<p>What members read.</p>"},
        }
    ]
    (story,) = parse_cms(json.dumps(protected).encode(), "wp", "https://x/")
    assert story.body == "What members read."
    items = parse_cms((DATA / "cms" / "jsonfeed-1.1.json").read_bytes(), "jf", "https://x/")
    assert items[0].body == "The tram will run from April 20."  # content_html
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {
                "url": "https://news.example.org/t",
                "title": "Text",
                "date_published": "2025-12-04T18:00:00Z",
                "content_text": "Line one.\n\n\nLine  two.",
            }
        ],
    }
    (text_item,) = parse_cms(json.dumps(feed).encode(), "jf", "https://x/")
    assert text_item.body == "Line one.\n\nLine two."


def test_a_page_gives_its_main_text_without_the_byline_or_the_head() -> None:
    story = read_page(str(DATA / "pages" / "ferry-budget.html"))
    assert story is not None
    assert "The Assembly voted 7-2 on Thursday night to keep the Auke Bay ferry running." in (
        story.body
    )
    assert "NewsArticle" not in story.body and "<" not in story.body


def test_the_body_is_capped_like_every_field() -> None:
    story = Story(
        url="https://news.example.org/long", title="Long", published_at=WHEN, body="word " * 50
    )
    (capped,) = capped_stories([story], Limits(body_max_chars=40))
    assert len(capped.body) <= 40 and capped.body.endswith("…")


# -- the store ---------------------------------------------------------------------------


def test_a_known_story_gets_its_body_on_the_next_collect_and_keeps_it(store: Store) -> None:
    story = Story(url="https://news.example.org/a", title="A", published_at=WHEN)
    assert store.stories.upsert_stories([story]) == (1, 0)
    # Stored before bodies were collected: the next collect brings it.
    assert store.stories.upsert_stories([replace(story, body="First text.")]) == (0, 1)
    (stored,) = store.stories.stories_by_url([story.url]).values()
    assert stored.body == "First text."
    # A later collect with no body (a feed's short entry, a page that failed) keeps it,
    # while the other fields are updated.
    store.stories.upsert_stories([replace(story, title="A, updated", body="")])
    (stored,) = store.stories.stories_by_url([story.url]).values()
    assert (stored.title, stored.body) == ("A, updated", "First text.")
    # A new body replaces the old one.
    store.stories.upsert_stories([replace(story, body="Second text.")])
    (stored,) = store.stories.stories_by_url([story.url]).values()
    assert stored.body == "Second text."


# -- never mailed ------------------------------------------------------------------------

MARKER = "ZQXBODYMARKER"


def _marked_newsroom(newsroom: Path) -> Settings:
    """The sample newsroom whose every feed item has a body with the marker in it."""
    feed = newsroom / "examples" / "sample-newsroom" / "feed.xml"
    text = feed.read_text(encoding="utf-8")
    marked = f"<item><content:encoded><![CDATA[<p>{MARKER} body.</p>]]></content:encoded>"
    feed.write_text(text.replace("<item>", marked), encoding="utf-8")
    return config.load(newsroom / "digest.toml", env={"DIGEST_SECRET_KEY": "test"})


def test_no_part_of_the_email_ever_shows_the_body(newsroom: Path, store: Store) -> None:
    settings = _marked_newsroom(newsroom)
    collect_all(settings, store)
    edition = draft(store, settings, date(2025, 12, 5))
    shown = [p.story for p in [edition.lead, *edition.more, *edition.most_read] if p]
    assert len(shown) >= 5 and all(MARKER in s.body for s in shown)
    for locale in ("en_US", "es_US"):
        nr = replace(settings.newsroom, locale=locale)
        out = render(replace(settings, newsroom=nr), edition)
        for part in (out.subject, out.preheader, out.html, out.text):
            assert MARKER not in part


def test_no_template_reads_a_story_body() -> None:
    for template in (ROOT / "templates").rglob("*.j2"):
        source = template.read_text(encoding="utf-8")
        assert not re.search(r"\.body\b|\[['\"]body['\"]\]", source), template


def test_real_pages_bodies_hold_the_article_readability_expects() -> None:
    """Mozilla Readability's pages: the body trafilatura finds against the article text
    Readability's maintainers expect (expected.html), by word F1 (tests/pages_corpus.py)."""
    need(READABILITY.is_dir(), f"{READABILITY} is missing (the shared corpus)")
    pages = sorted(p for p in READABILITY.iterdir() if (p / "source.html").exists())
    harvest = read_pages([str(p / "source.html") for p in pages])
    by_page = {story.source: story for story in harvest.stories}
    scores = []
    for page in pages:
        story = by_page.get(str(page / "source.html"))
        if story is None:
            continue  # saved without an address or a date (test_collect_pages.py)
        article = fromstring((page / "expected.html").read_bytes()).text_content()
        scores.append(word_f1(story.body, article))
        assert not re.search(r"<(p|div|span|a|br)\b", story.body)  # no markup left
    scores.sort()
    # Measured: 33 pages, 28 of them with F1 ≥ 0.8, median 0.935, mean 0.877.
    assert len(scores) == 33
    assert sum(score >= 0.8 for score in scores) >= 26
    assert scores[len(scores) // 2] >= 0.9
