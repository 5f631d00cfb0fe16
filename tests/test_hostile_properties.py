"""Whatever a feed holds, the mailed copy is safe (issue 8): property-based, with hypothesis.

Each example is a real RSS document built from arbitrary text and URLs (and the
strings attackers try first), read by the real feed reader, ranked into an edition,
rendered by the real templates and filled for one reader exactly as the outbox and
SMTP backends fill it. Whatever went in, what comes out has no script, no event
handler, no link that is not http(s) or mailto, no picture that is not http(s), the
reader's signed link only in the footer, and no substitution token left anywhere.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from fakes.editions import edition_of
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from lxml import html as lxml_html

from digest import config
from digest.collect.feeds import parse_feed
from digest.config import Settings
from digest.models import Edition, Recipient
from digest.render import render
from digest.send import letter_for

ROOT = Path(__file__).resolve().parent.parent
TOKEN_SYNTAX = re.compile(r"%%[A-Za-z0-9_.:-]+%%")
SAFE_HREF = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)

#: What an attacker tries first, mixed into arbitrary text.
ATTACKS = [
    "%%greeting%%",
    "%%greeting_text%%",
    "%%unsubscribe_url%%",
    "%%unsubscribe_url-0123456789abcdef%%",
    "%%",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<a href='javascript:alert(1)'>x</a>",
    "<iframe src=https://evil.example/></iframe>",
    "<style>body{display:none}</style>",
    "{{ 7*7 }}",
    "{% include 'x' %}",
    "javascript:alert(1)",
    "&lt;script&gt;",
    "]]>",
    "\u202e",
    "mj-raw",
    "<mj-raw><script>x</script></mj-raw>",
]
URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>x</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/x",
    "https://evil.example/?u=%%unsubscribe_url%%",
    "https://evil.example/%%greeting%%.gif",
    'https://evil.example/"onmouseover="alert(1)',
    "https://evil.example/a b",
    "mailto:someone@evil.example",
]

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=30,
)
TEXT = st.lists(st.one_of(st.sampled_from(ATTACKS), _TEXT), max_size=5).map("".join)
URL = st.one_of(
    st.sampled_from(URLS),
    TEXT.map(lambda tail: "https://evil.example/" + tail),
    TEXT.map(lambda tail: "https://evil.example/p?u=" + tail),
)
ITEM = st.fixed_dictionaries(
    {
        "title": TEXT,
        "link": URL,
        "description": TEXT,
        "author": TEXT,
        "category": TEXT,
        "image": URL,
        "caption": TEXT,
    }
)


def _feed(items: list[dict[str, str]]) -> bytes:
    entries = "".join(
        f"<item><title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
        f"<description>{escape(i['description'])}</description>"
        f"<author>{escape(i['author'])}</author><category>{escape(i['category'])}</category>"
        "<pubDate>Fri, 05 Dec 2025 01:00:00 -0900</pubDate>"
        f'<media:content url={quoteattr(i["image"])} medium="image">'
        f"<media:description>{escape(i['caption'])}</media:description></media:content>"
        "</item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        f"<title>Wire</title><link>https://wire.example/</link>{entries}</channel></rss>"
    ).encode()


@pytest.fixture(scope="module")
def newsroom_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("hostile-newsroom")
    shutil.copytree(ROOT / "examples" / "sample-newsroom", folder / "examples" / "sample-newsroom")
    shutil.copy(ROOT / "digest.toml", folder / "digest.toml")
    return config.load(folder / "digest.toml", env={"DIGEST_SECRET_KEY": "test-secret"})


def _edition(items: list[dict[str, str]]) -> Edition:
    stories = parse_feed(_feed(items), "hostile.xml", "https://wire.example/feed.xml")
    assume(stories)
    return edition_of(stories)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(ITEM, min_size=1, max_size=3), name=TEXT)
def test_whatever_a_feed_holds_the_mailed_copy_is_safe(
    newsroom_settings: Settings, items: list[dict[str, str]], name: str
) -> None:
    edition = _edition(items)
    letter = letter_for(newsroom_settings, render(newsroom_settings, edition))
    reader = Recipient("reader@example.org", name.strip()[:60])
    message = letter.message_for(reader)
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    html, text = parts["text/html"], parts["text/plain"]
    url = letter.unsubscribe_url(reader)

    doc = lxml_html.fromstring(html)
    assert not doc.xpath("//script | //iframe | //object | //embed | //form")
    for attribute in doc.xpath("//@*"):
        assert not attribute.attrname.lower().startswith("on"), attribute.attrname
    for element in doc.xpath("//*[@href]"):
        assert SAFE_HREF.match(element.get("href").strip()), element.get("href")
    for element in doc.xpath("//*[@src]"):
        assert element.get("src").lower().startswith(("https:", "http:")), element.get("src")
    signed = url.rsplit("/", 1)[1]
    for attribute in doc.xpath("//@*"):
        if signed in str(attribute):
            assert attribute.attrname == "href" and str(attribute) == url
    # The reader's own values never stand as a token waiting to be filled, nor in text
    # beyond the footer's one line.
    assert TOKEN_SYNTAX.search(html) is None and TOKEN_SYNTAX.search(text) is None
    assert text.count(signed) == 1 and f"Unsubscribe: {url}" in text
    assert TOKEN_SYNTAX.search(message["Subject"]) is None
