"""Text that survives: titles, captions, bylines and URLs in the world's scripts, mailed,
then decoded as a mail client decodes them, compared with what went in.

mjml-python wrote combining marks, ZWJ and RTL marks in attributes with Rust's debug
escaping (`Kunéix\\u{331} Hídi`); render._mjml_safe works around it."""

from __future__ import annotations

import unicodedata
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from urllib.parse import unquote

from fakes.editions import T, edition_of
from lxml import html as lxml_html

from digest.config import Settings
from digest.models import Recipient, Story
from digest.render import alt_text, render
from digest.send import letter_for

#: Decomposed on purpose: the marks are their own code points, as some CMSs send them.
VIETNAMESE = unicodedata.normalize("NFD", "Tiếng Việt: Hà Nội đón đợt rét đầu mùa")
STORIES = [
    Story(
        url="https://news.example.org/ḵunéix̱-hídi/?q=Lingít&emoji=👩‍👩‍👧‍👦",
        title="Ḵunéix̱ Hídi church hosts Lingít storytellers 👩‍👩‍👧‍👦",
        dek="Yup’ik elders from Kuigpak and Lingít speakers share the stage 🧑🏽‍🤝‍🧑🏿.",
        byline="X̱’unei Lance Twitchell",
        section="Culture",
        published_at=T,
        image_url="https://cdn.example.org/ḵunéix̱-hídi.jpg",
        image_caption="Storytellers at Ḵunéix̱ Hídi 🏳️‍🌈",
        image_credit="Kéet Yaaw / Channel News",
    ),
    Story(
        url="https://news.example.org/tieng-viet/",
        title=VIETNAMESE,
        dek=unicodedata.normalize("NFD", "Nhiệt độ xuống dưới không độ."),
        byline="Nguyễn Thị Minh Khai",
        section="World",
        published_at=T,
        image_url="https://cdn.example.org/hanoi.jpg",
        image_caption=VIETNAMESE,
    ),
    Story(
        url="https://news.example.org/عربي/",
        title="مرحبا بالعالم: أخبار اليوم من جونو",
        dek="שלום עולם — חדשות מג׳ונו",
        byline="ليلى حداد",
        section="World",
        published_at=T,
    ),
    Story(
        url="https://news.example.org/日本語/東京?記事=1",
        title="東京で初雪、平年より早く 🌨️",
        dek="서울에서도 첫눈이 내렸다. 北京也下雪了。",
        byline="山田太郎",
        section="World",
        published_at=T,
    ),
]
READER = Recipient("nguyen.minh@example.com", "Nguyễn Văn An 👋🏽")


def _mailed(settings: Settings) -> EmailMessage:
    """One reader's message as the outbox writes it, read back as a mail client does."""
    letter = letter_for(settings, render(settings, edition_of(STORIES, preheader=VIETNAMESE)))
    raw = letter.message_for(READER).as_bytes()
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def _text(element: lxml_html.HtmlElement) -> str:
    return " ".join(element.text_content().split())


def test_every_character_survives_html_text_and_subject(settings: Settings) -> None:
    message = _mailed(settings)
    lead = STORIES[0]
    assert message["Subject"] == lead.title
    assert message["To"].addresses[0].display_name == READER.name

    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "\\u{" not in html  # mjml-python's escaping, worked around
    doc = lxml_html.fromstring(html)
    assert _text(doc.xpath("//h1")[0]) == lead.title
    assert [_text(h) for h in doc.xpath("//h3")] == [s.title for s in STORIES[1:]]
    assert [_text(li) for li in doc.xpath("//ol/li")] == [s.title for s in STORIES]
    body = _text(doc.xpath("//body")[0])
    for story in STORIES:
        assert story.dek in body
    assert f"By {lead.byline}" in body
    assert f"{lead.image_caption} ({lead.image_credit})" in body
    assert f"Good morning, {READER.name}." in body
    # Attributes: alt text and the button's accessible name, character for character.
    alts = doc.xpath("//img/@alt")
    assert alt_text(lead) in alts and alt_text(STORIES[1]) == VIETNAMESE in alts
    assert doc.xpath("//td[@class='button']/a/@aria-label") == [f"Read the story: {lead.title}"]
    # Links and pictures: lxml writes non-ASCII in href/src as UTF-8 percent-escapes, the
    # IRI-to-URI mapping of RFC 3987 3.1, which every client follows to the same address.
    hrefs = {unquote(h) for h in doc.xpath("//a/@href")}
    assert {s.url for s in STORIES} <= hrefs
    sources = {unquote(s) for s in doc.xpath("//img/@src")}
    assert {s.image_url for s in STORIES if s.image_url} <= sources

    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    flat = " ".join(text.split())
    assert lead.title.upper() in flat
    for story in STORIES:
        assert story.url in text
        assert story.title in flat or story.title.upper() in flat
    assert f"By {lead.byline}" in flat and lead.dek in flat
    assert f"Good morning, {READER.name}." in text


def test_right_to_left_text_is_marked_for_the_client(settings: Settings) -> None:
    """An Arabic headline in an English edition reads right to left: every headline,
    dek and list item says dir="auto", so the client takes the direction from its text."""
    doc = lxml_html.fromstring(render(settings, edition_of(STORIES, preheader=VIETNAMESE)).html)
    arabic = next(h for h in doc.xpath("//h3") if _text(h).startswith("مرحبا"))
    assert arabic.get("dir") == "auto"
    assert all(li.get("dir") == "auto" for li in doc.xpath("//ol/li"))
