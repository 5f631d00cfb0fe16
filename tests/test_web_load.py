"""The public endpoints under concurrent load, on a real uvicorn server on 127.0.0.1, on
SQLite and PostgreSQL: one-click unsubscribes and SendGrid webhook posts from many
connections at once go through the app's one writer (digest/web/writer.py), each
request still answered for itself, and nothing lost or doubled.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from digest.config import Settings
from digest.models import Subscriber
from digest.send.sendgrid_events import KEY_VARIABLE
from digest.store import Store
from digest.subscribers import unsubscribe_token
from digest.web import create_app
from tests.test_web import SendGridKey, serving, statuses, suppression_rows, with_env

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def test_one_click_posts_from_many_connections_each_get_their_own_answer(
    settings: Settings, store: Store
) -> None:
    readers = [f"reader{i:03d}@example.org" for i in range(300)]
    store.subscribers.upsert_subscribers([Subscriber(email, "R") for email in readers])
    # One had bounced before: it keeps that reason and is told it had left already.
    store.subscribers.suppress(readers[0], "bounced", source="sendgrid:bounce")
    # Each reader once, the first 40 twice more (a mail client retrying): 380 posts.
    posts = readers + readers[:40] + readers[:40]

    async def post_all(site: str) -> list[tuple[str, int, str]]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:

            async def one(email: str) -> tuple[str, int, str]:
                token = unsubscribe_token(settings.secret_key, email)
                response = await client.post(
                    f"{site}/unsubscribe/{token}",
                    content=b"List-Unsubscribe=One-Click",
                    headers=ONE_CLICK,
                )
                return email, response.status_code, response.text

            return await asyncio.gather(*(one(email) for email in posts))

    with serving(create_app(settings, store)) as site:
        answers = asyncio.run(post_all(site))

    assert {status for _, status, _ in answers} == {200}
    told_now: dict[str, int] = {}
    for email, _, text in answers:
        now = "You are unsubscribed" in text
        assert now or "already unsubscribed" in text
        told_now[email] = told_now.get(email, 0) + now
    # Exactly one of a reader's posts unsubscribed them; the bounced one, none.
    assert told_now == {email: 0 if email == readers[0] else 1 for email in readers}
    rows = suppression_rows(store)
    assert rows[readers[0]] == ("bounced", "sendgrid:bounce")
    assert {rows[email] for email in readers[1:]} == {("unsubscribed", "one-click")}
    assert set(statuses(store).values()) == {"bounced", "unsubscribed"}


def test_webhook_posts_and_unsubscribes_at_once_lose_nothing(
    settings: Settings, store: Store
) -> None:
    key = SendGridKey()
    readers = [f"reader{i:03d}@example.org" for i in range(400)]
    store.subscribers.upsert_subscribers([Subscriber(email) for email in readers])
    now = int(time.time())
    bounced, clicking = readers[:200], readers[200:]
    # Ten posts of 20 bounces each, the last ten readers of every post also in a spam
    # report later in the same post (the first reason stands: bounced).
    bodies = []
    for start in range(0, 200, 20):
        chunk = bounced[start : start + 20]
        events = [
            {"email": e, "event": "bounce", "type": "bounce", "timestamp": now} for e in chunk
        ]
        events += [{"email": e, "event": "spamreport", "timestamp": now} for e in chunk[10:]]
        bodies.append(json.dumps(events).encode())

    async def load(site: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16), timeout=120) as c:
            hooks = [
                c.post(f"{site}/webhooks/sendgrid", content=body, headers=key.headers(body))
                for body in bodies
            ]
            clicks = [
                c.post(
                    f"{site}/unsubscribe/{unsubscribe_token(settings.secret_key, email)}",
                    content=b"List-Unsubscribe=One-Click",
                    headers=ONE_CLICK,
                )
                for email in clicking
            ]
            answers = await asyncio.gather(*hooks, *clicks)
            return answers[: len(hooks)], answers[len(hooks) :]

    configured = with_env(settings, **{KEY_VARIABLE: key.verification_key})
    with serving(create_app(configured, store)) as site:
        hooks, clicks = asyncio.run(load(site))

    assert [r.status_code for r in hooks] == [200] * len(bodies)
    assert all(r.status_code == 200 and "You are unsubscribed" in r.text for r in clicks)
    assert sum(r.json()["new_suppressions"] for r in hooks) == len(bounced)
    rows = suppression_rows(store)
    assert {rows[e] for e in bounced} == {("bounced", "sendgrid:bounce")}
    assert {rows[e] for e in clicking} == {("unsubscribed", "one-click")}
    assert len(rows) == len(readers)
