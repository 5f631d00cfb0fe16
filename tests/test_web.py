"""The web app on a real uvicorn server on 127.0.0.1, talked to with httpx, on SQLite and
PostgreSQL: the unsubscribe pages (RFC 8058 one-click) and SendGrid's signed event webhook.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from starlette.applications import Starlette

from digest.config import Settings
from digest.models import Subscriber
from digest.send.sendgrid_events import (
    KEY_VARIABLE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    interpret,
)
from digest.store import Store, suppressions
from digest.subscribers import unsubscribe_token
from digest.web import create_app

READER = "renee.obrien@example.org"
DIGEST = [sys.executable, "-m", "digest.cli"]


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """The app on a real uvicorn server on a free port of 127.0.0.1, in a thread."""
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and with Nagle on every reused connection waits 40 ms for an ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class SendGridKey:
    """An ECDSA P-256 key pair, used the way SendGrid uses its own."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: What SendGrid shows as the "Verification Key": base64 DER, no PEM armour.
        self.verification_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """SendGrid's headers: the timestamp, and ECDSA-SHA256 over timestamp + raw body."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="module")
def sendgrid_key() -> SendGridKey:
    return SendGridKey()


def with_env(settings: Settings, **env: str) -> Settings:
    return replace(settings, env={**settings.env, **env})


def statuses(store: Store) -> dict[str, str]:
    return {s.email: s.status for s in store.subscribers.iter_subscribers()}


def suppression_rows(store: Store) -> dict[str, tuple[str, str]]:
    with store.begin() as conn:
        rows = conn.execute(
            select(suppressions.c.email, suppressions.c.reason, suppressions.c.source)
        )
        return {email: (reason, source) for email, reason, source in rows}


@pytest.fixture
def site(store: Store, settings: Settings, sendgrid_key: SendGridKey) -> Iterator[str]:
    """The app for the sample newsroom, on the test's store, with a webhook key set."""
    store.subscribers.upsert_subscribers([Subscriber(READER, "Renée")])
    configured = with_env(settings, **{KEY_VARIABLE: sendgrid_key.verification_key})
    with serving(create_app(configured, store)) as url:
        yield url


def token_url(site: str, settings: Settings, email: str = READER) -> str:
    return f"{site}/unsubscribe/{unsubscribe_token(settings.secret_key, email)}"


# -- unsubscribing -------------------------------------------------------------------


def test_get_shows_the_page_and_unsubscribes_nobody(
    site: str, settings: Settings, store: Store
) -> None:
    url = token_url(site, settings)
    page = httpx.get(url)
    assert page.status_code == 200
    assert "Unsubscribe from the daily digest?" in page.text
    assert '<form method="post">' in page.text and "Gastineau Channel News" in page.text
    # Partly shown: whoever holds a forwarded link does not learn the whole address.
    assert "re•••@example.org" in page.text and READER not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'name="viewport"' in page.text
    assert httpx.head(url).status_code == 200  # link scanners often HEAD first
    assert statuses(store)[READER] == "active"
    assert suppression_rows(store) == {}


def test_one_click_post_unsubscribes_for_good(
    site: str, settings: Settings, store: Store, db_url: str
) -> None:
    url = token_url(site, settings)
    # RFC 8058 section 3.1: no cookies, no JS, just this body (as Gmail sends it).
    done = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200, done.text
    assert "You are unsubscribed" in done.text
    assert statuses(store)[READER] == "unsubscribed"
    assert suppression_rows(store) == {READER: ("unsubscribed", "one-click")}
    again = httpx.post(url, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200 and "already unsubscribed" in again.text
    assert "already unsubscribed" in httpx.get(url).text

    # The newsroom's spreadsheet still lists the reader as active: an import keeps them out.
    newsroom = settings.path.parent
    (newsroom / "again.csv").write_text(f"email,name,status\n{READER},Renée,active\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environment.update(DIGEST_DATABASE_URL=db_url, DIGEST_SECRET_KEY="test-secret")
    imported = subprocess.run(
        [*DIGEST, "subscribers", "import", "again.csv", "-c", str(settings.path)],
        cwd=newsroom,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert "1 had left and stay unsubscribed" in imported.stdout
    assert statuses(store)[READER] == "unsubscribed"


def test_one_click_as_multipart_form_data(site: str, settings: Settings, store: Store) -> None:
    # RFC 8058 section 3.1: the POST SHOULD be multipart/form-data.
    done = httpx.post(token_url(site, settings), files={"List-Unsubscribe": (None, "One-Click")})
    assert done.status_code == 200
    assert suppression_rows(store) == {READER: ("unsubscribed", "one-click")}


def test_the_page_button_unsubscribes(site: str, settings: Settings, store: Store) -> None:
    done = httpx.post(token_url(site, settings), data={"confirm": "yes"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert suppression_rows(store) == {READER: ("unsubscribed", "web")}
    assert statuses(store)[READER] == "unsubscribed"


def test_a_reader_who_bounced_keeps_that_reason(
    site: str, settings: Settings, store: Store
) -> None:
    store.subscribers.suppress(READER, "bounced", source="sendgrid:bounce")
    done = httpx.post(token_url(site, settings), content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200 and "already unsubscribed" in done.text
    assert suppression_rows(store) == {READER: ("bounced", "sendgrid:bounce")}
    assert statuses(store)[READER] == "bounced"


def test_a_forged_or_broken_token_changes_nothing(
    site: str, settings: Settings, store: Store
) -> None:
    real = unsubscribe_token(settings.secret_key, READER)
    address, signature = real.split(".")
    other = unsubscribe_token(b"some other newsroom's key", READER)
    for token in (
        other,  # signed with another key
        f"{address}.{signature[:-2]}AA",  # the signature changed
        real[:-6],  # cut short by a mail client
        "not-a-token",
        "",
    ):
        url = f"{site}/unsubscribe/{token}" if token else f"{site}/unsubscribe/%20"
        for answer in (httpx.get(url), httpx.post(url, content=b"List-Unsubscribe=One-Click")):
            assert answer.status_code == 400, (token, answer.status_code)
            assert "This unsubscribe link is broken" in answer.text
            # What to do instead: reply, or write to the newsroom's reply-to address.
            assert "mailto:newsroom@news.example.org" in answer.text
    assert statuses(store)[READER] == "active"
    assert suppression_rows(store) == {}


def test_the_preview_link_explains_itself(site: str, store: Store) -> None:
    page = httpx.get(f"{site}/unsubscribe")
    assert page.status_code == 200
    assert "This is a preview link" in page.text and "unsubscribes nobody" in page.text
    assert suppression_rows(store) == {}


def test_pages_escape_what_the_settings_say(store: Store, settings: Settings) -> None:
    hostile = replace(
        settings,
        newsroom=replace(
            settings.newsroom,
            name='<script>alert("x")</script> & Sons',
            brand_color="red}</style><script>alert(1)</script>",
        ),
    )
    store.subscribers.upsert_subscribers([Subscriber(READER, "Renée")])
    with serving(create_app(hostile, store)) as site:
        for url in (token_url(site, settings), f"{site}/unsubscribe", f"{site}/unsubscribe/x"):
            page = httpx.get(url)
            assert "<script>" not in page.text, url
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in page.text
            assert "#1a4e8a" in page.text  # the unusable colour was replaced
            assert "script-src" not in page.headers["content-security-policy"]


def test_healthz(site: str) -> None:
    answer = httpx.get(f"{site}/healthz")
    assert answer.status_code == 200 and answer.text == "ok"


# -- the SendGrid event webhook ----------------------------------------------------------


def events_for(*events: dict[str, Any]) -> bytes:
    stamp = int(time.time())
    return json.dumps(
        [{"timestamp": stamp, "sg_event_id": f"e{i}", **e} for i, e in enumerate(events)]
    ).encode()


PEOPLE = {
    "gone@example.org": {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user"},
    "annoyed@example.org": {"event": "spamreport"},
    "left@example.org": {"event": "group_unsubscribe", "asm_group_id": 42},
    "full@example.org": {"event": "bounce", "type": "blocked", "reason": "452 mailbox full"},
    "happy@example.org": {"event": "delivered", "response": "250 OK"},
}


def test_webhook_turns_events_into_suppressions(
    site: str, store: Store, sendgrid_key: SendGridKey
) -> None:
    store.subscribers.upsert_subscribers([Subscriber(email) for email in PEOPLE])
    body = events_for(
        *({"email": email, **event} for email, event in PEOPLE.items()),
        {"email": "gone@example.org", "event": "bounce", "type": "bounce"},  # a repeat
        {"event": "bounce", "type": "bounce"},  # no email: skipped, the rest go on
    )
    answer = httpx.post(
        f"{site}/webhooks/sendgrid", content=body, headers=sendgrid_key.headers(body)
    )
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["events"] == 7
    assert summary["kinds"] == {
        "bounce": 4,
        "spamreport": 1,
        "group_unsubscribe": 1,
        "delivered": 1,
    }
    assert summary["suppressions"] == {"bounced": 2, "complained": 1, "unsubscribed": 1}
    assert summary["new_suppressions"] == 3
    assert summary["ignored"] == 2
    assert summary["rejected"] == ["event 7 (bounce): no email; skipped"]
    now = statuses(store)
    assert now["gone@example.org"] == "bounced"
    assert now["annoyed@example.org"] == "complained"
    assert now["left@example.org"] == "unsubscribed"
    assert now["full@example.org"] == "active"  # blocked is temporary
    assert now["happy@example.org"] == "active"
    assert now[READER] == "active"
    assert suppression_rows(store) == {
        "gone@example.org": ("bounced", "sendgrid:bounce"),
        "annoyed@example.org": ("complained", "sendgrid:spamreport"),
        "left@example.org": ("unsubscribed", "sendgrid:group_unsubscribe"),
    }


def test_webhook_refuses_what_sendgrid_did_not_sign(
    site: str, store: Store, sendgrid_key: SendGridKey
) -> None:
    body = events_for({"email": READER, "event": "spamreport"})
    webhook = f"{site}/webhooks/sendgrid"
    signed = sendgrid_key.headers(body)

    tampered = body.replace(READER.encode(), b"someone.else@example.org")
    forged = SendGridKey().headers(body)  # a key SendGrid never showed us
    stale = sendgrid_key.headers(body, timestamp=int(time.time()) - 26 * 3600)  # a replay
    ahead = sendgrid_key.headers(body, timestamp=int(time.time()) + 3600)
    for content, headers, why in (
        (tampered, signed, "bad signature"),
        (body, forged, "bad signature"),
        (body, {**signed, SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}, "bad signature"),
        (body, {**signed, SIGNATURE_HEADER: "abc"}, "bad signature"),
        (body, stale, "s ago"),
        (body, ahead, "in the future"),
        (body, {**signed, TIMESTAMP_HEADER: "yesterday"}, "not a Unix time"),
        (body, {"Content-Type": "application/json"}, "unsigned"),
    ):
        answer = httpx.post(webhook, content=content, headers=headers)
        assert answer.status_code == 403, (why, answer.text)
        assert why in answer.text
    assert suppression_rows(store) == {}
    assert statuses(store)[READER] == "active"

    # The same body, properly signed and fresh, goes through.
    assert httpx.post(webhook, content=body, headers=signed).status_code == 200
    assert statuses(store)[READER] == "complained"


def test_webhook_signed_but_malformed_is_400(
    site: str, store: Store, sendgrid_key: SendGridKey
) -> None:
    for body in (b"{not json", b'{"email": "a@example.org", "event": "bounce"}'):
        answer = httpx.post(
            f"{site}/webhooks/sendgrid", content=body, headers=sendgrid_key.headers(body)
        )
        assert answer.status_code == 400, answer.text
    assert suppression_rows(store) == {}


def test_webhook_without_a_key_accepts_nothing(
    store: Store, settings: Settings, sendgrid_key: SendGridKey
) -> None:
    store.subscribers.upsert_subscribers([Subscriber(READER)])
    body = events_for({"email": READER, "event": "spamreport"})
    not_a_key = "c2VjcmV0LWJ1dC1ub3QtYS1rZXk="
    for env, why in (({}, "is not set"), ({KEY_VARIABLE: not_a_key}, "is not an ECDSA P-256")):
        with serving(create_app(with_env(settings, **env), store)) as site:
            for headers in ({}, sendgrid_key.headers(body)):
                answer = httpx.post(f"{site}/webhooks/sendgrid", content=body, headers=headers)
                assert answer.status_code == 503
                assert why in answer.text and KEY_VARIABLE in answer.text
                assert not_a_key not in answer.text and "\n" not in answer.text
    assert suppression_rows(store) == {}
    assert statuses(store)[READER] == "active"


@pytest.mark.parametrize(
    ("event", "suppression"),
    [
        ({"event": "bounce", "type": "bounce"}, "bounced"),
        ({"event": "bounce", "type": "blocked"}, None),  # temporary: SendGrid's Blocks
        ({"event": "bounce"}, None),  # no type: SendGrid drops the next one if it was real
        ({"event": "spamreport"}, "complained"),
        ({"event": "unsubscribe"}, "unsubscribed"),
        ({"event": "group_unsubscribe", "asm_group_id": 7}, "unsubscribed"),
        ({"event": "dropped", "reason": "Bounced Address"}, "bounced"),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, "unsubscribed"),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, "complained"),
        ({"event": "dropped", "reason": "Invalid"}, None),
        ({"event": "dropped", "reason": "Spam Content"}, None),
        ({"event": "dropped"}, None),
        ({"event": "processed"}, None),
        ({"event": "delivered"}, None),
        ({"event": "deferred", "attempt": "5"}, None),
        ({"event": "open"}, None),
        ({"event": "click"}, None),
        ({"event": "group_resubscribe"}, None),
        ({}, None),
    ],
)
def test_what_each_event_means(event: dict[str, Any], suppression: str | None) -> None:
    assert interpret(event) == suppression


def test_a_group_unsubscribe_from_another_group_is_not_ours() -> None:
    assert interpret({"event": "group_unsubscribe", "asm_group_id": 7}, asm_group_id=7)
    assert interpret({"event": "group_unsubscribe", "asm_group_id": 8}, asm_group_id=7) is None
    assert interpret({"event": "unsubscribe"}, asm_group_id=7) == "unsubscribed"


# -- the command -----------------------------------------------------------------------


def test_digest_web_help() -> None:
    shown = subprocess.run([*DIGEST, "web", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for words in ("--host", "--port", "--config", "HTTPS", "[web] base_url", "/webhooks/sendgrid"):
        assert words in shown.stdout, words


def test_digest_web_serves_until_sigterm(newsroom: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") and k != KEY_VARIABLE
    }
    process = subprocess.Popen(
        [*DIGEST, "web", "--port", str(port), "-c", "digest.toml"],
        cwd=newsroom,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "digest web did not start"
                time.sleep(0.1)
        assert answer.text == "ok"
        page = httpx.get(f"http://127.0.0.1:{port}/unsubscribe")
        assert "preview link" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells how
    # the process ended (systemd counts SIGTERM as a clean stop).
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert "base_url http://localhost:8000 is not https://" in err
    assert "SENDGRID_WEBHOOK_VERIFICATION_KEY is not set" in err


# -- the "View in browser" link ---------------------------------------------------------


def test_view_in_browser_shows_a_sent_edition_and_no_draft(
    site: str, settings: Settings, store: Store
) -> None:
    from datetime import date

    from digest import jobs

    jobs.collect(settings, store)
    edition = jobs.draft(settings, store, date(2025, 12, 5))
    url = f"{site}/editions/{edition.name}"
    draft = httpx.get(url)
    assert draft.status_code == 404 and edition.lead is not None
    assert edition.lead.story.title not in draft.text  # a draft is not public
    jobs.send(settings, store, edition.name)
    sent = httpx.get(url)
    assert sent.status_code == 200
    assert edition.lead.story.title in sent.text
    assert "%%" not in sent.text and "Good morning." in sent.text
    assert "img-src https:" in sent.headers["content-security-policy"]
    assert "script" not in sent.headers["content-security-policy"]
    assert httpx.get(f"{site}/editions/../../etc/passwd").status_code == 404
    assert httpx.get(f"{site}/editions/2099-01-01").status_code == 404


def test_webhook_takes_a_retry_signed_hours_ago(
    site: str, store: Store, sendgrid_key: SendGridKey
) -> None:
    """SendGrid retries for up to 24 hours: the bounces of an outage are not lost."""
    store.subscribers.upsert_subscribers([Subscriber("gone@example.org")])
    body = events_for({"email": "gone@example.org", "event": "bounce", "type": "bounce"})
    signed_earlier = sendgrid_key.headers(body, timestamp=int(time.time()) - 6 * 3600)
    answer = httpx.post(f"{site}/webhooks/sendgrid", content=body, headers=signed_earlier)
    assert answer.status_code == 200, answer.text
    assert statuses(store)["gone@example.org"] == "bounced"
