"""SendGrid's events settle the batches a crash left in doubt (send/doubt.py).

Real parts: our SendGrid server on 127.0.0.1 posting signed Event Webhook requests,
as SendGrid does, to the web app on a real uvicorn server; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fakes.newsroom import (
    EDITION,
    drafted_newsroom,
    letter,
    with_delivery,
)
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from fakes.sendgrid_webhook import EventPoster, WebhookKey
from sqlalchemy import func, select
from test_web import serving

from digest import jobs
from digest.config import Settings
from digest.models import Subscriber
from digest.send.sendgrid import SendGridBackend
from digest.send.sendgrid_events import KEY_VARIABLE
from digest.store import Store
from digest.store.events import event_counts, sendgrid_events
from digest.web import create_app

READERS = [Subscriber(f"reader{i:03d}@example.org", f"Reader {i}") for i in range(50)]


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Settings:
    loaded = drafted_newsroom(tmp_path_factory.mktemp("events-newsroom"), db_url)
    return with_delivery(loaded, batch_size=10, retry_base_delay=0.01)


def with_env(settings: Settings, **env: str) -> Settings:
    return replace(settings, env={**settings.env, **env})


@pytest.fixture
def key() -> WebhookKey:
    return WebhookKey()


@pytest.fixture
def site(settings: Settings, key: WebhookKey) -> Iterator[tuple[str, Store]]:
    """`digest web` (the app on uvicorn) with the webhook's verification key; its store."""
    store = Store.open(settings.database_url)
    store.subscribers.upsert_subscribers(READERS)
    with serving(
        create_app(with_env(settings, **{KEY_VARIABLE: key.verification_key}), store)
    ) as url:
        yield url, store
    store.close()


def _stored(store: Store) -> list[tuple[str, str, int, str]]:
    with store.begin() as conn:
        rows = conn.execute(
            select(
                sendgrid_events.c.sg_event_id,
                sendgrid_events.c.edition,
                sendgrid_events.c.batch,
                sendgrid_events.c.event,
            ).order_by(sendgrid_events.c.sg_event_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_the_webhook_keeps_each_delivery_event_of_a_batch_once(
    site: tuple[str, Store], key: WebhookKey
) -> None:
    url, store = site
    stamp = int(time.time())

    def event(sg_event_id: str, kind: str, **more: Any) -> dict[str, Any]:
        return {"email": "Reader001@example.org", "timestamp": stamp, "event": kind,
                "sg_event_id": sg_event_id, **more}  # fmt: skip

    body = json.dumps(
        [
            event("a", "processed", edition=EDITION, batch="3"),
            event("b", "delivered", edition=EDITION, batch="3"),
            event("a", "processed", edition=EDITION, batch="3"),  # SendGrid repeated it
            event("c", "deferred", unique_args={"edition": EDITION, "batch": "4"}),
            event("d", "open", edition=EDITION, batch="3"),  # kept, but settles nothing
            event("e", "processed", edition=EDITION, batch="1733412345678901"),  # a test copy
            event("f", "processed", edition="alerts", batch="7"),  # a notice to operators
            event("g", "processed"),  # another newsletter of the same account
            event("h", "bounce", edition=EDITION, batch="5", type="bounce"),
        ]
    ).encode()
    for _ in range(2):  # and SendGrid posted the whole request again
        answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=key.headers(body))
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] == 5
    assert _stored(store) == [
        ("a", EDITION, 3, "processed"),
        ("b", EDITION, 3, "delivered"),
        ("c", EDITION, 4, "deferred"),
        ("d", EDITION, 3, "open"),
        ("h", EDITION, 5, "bounce"),
    ]
    assert event_counts(store, EDITION, [3, 4, 6]) == {
        3: {"processed": 1, "delivered": 1},
        4: {"deferred": 1},
    }
    # The bounce still did what a bounce does.
    assert store.subscribers.suppression("reader001@example.org").reason == "bounced"


def test_a_resume_settles_from_events_what_sendgrid_took_and_waits_for_the_rest(
    settings: Settings, site: tuple[str, Store], key: WebhookKey
) -> None:
    url, store = site
    poster = EventPoster(f"{url}/webhooks/sendgrid", key)
    with FakeSendGrid(events=poster) as fake:
        room = with_env(settings, SENDGRID_API_KEY=DEFAULT_KEY, SENDGRID_API_HOST=fake.url)
        first = jobs.send(room, store, EDITION, backend="sendgrid", limit=2)
        assert (first.sent, first.state) == (20, "paused")
        send_id = first.send_id
        # Then a crash: batch 3 was taken by SendGrid and its answer never read; batch
        # 4 was claimed and the process died before its request left.
        taken = store.sends.claim_batch(send_id)
        never = store.sends.claim_batch(send_id)
        assert taken is not None and never is not None
        backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
        backend.push(letter(room), taken)
        backend.close()
        deadline = time.monotonic() + 20
        while taken.number not in event_counts(store, EDITION, [taken.number]):
            assert time.monotonic() < deadline, "SendGrid's events never arrived"
            time.sleep(0.05)

        resumed = jobs.send(room, store, EDITION, resume=True)
        assert resumed.settled_now == [taken.number]
        assert resumed.in_doubt_batches == resumed.awaiting_events == [never.number]
        assert resumed.sent == 40 and resumed.state == "incomplete"
        assert "no SendGrid event yet" in resumed.note and "again after" in resumed.note
        # Within the wait, even --retry-in-doubt leaves it: its events may be on the way.
        again = jobs.send(room, store, EDITION, resume=True, retry_in_doubt=True)
        assert again.in_doubt_batches == [never.number] and again.settled_now == []

        # The wait is over and no event came: SendGrid most likely never took it.
        later = with_delivery(room, event_wait_seconds=0)
        left = jobs.send(later, store, EDITION, resume=True)
        assert left.in_doubt_batches == [never.number] and left.awaiting_events == []
        assert "most likely never took" in left.note and "--retry-in-doubt" in left.note
        done = jobs.send(later, store, EDITION, resume=True, retry_in_doubt=True)
        assert (done.state, done.sent, done.in_doubt) == ("done", 50, 0)
        assert done.settled_by_events == [taken.number]
        got = Counter(d.email for d in fake.deliveries)
    assert sorted(got) == [r.email for r in READERS] and set(got.values()) == {1}
    # Every event SendGrid posted was kept once, the repeated first request included.
    with store.begin() as conn:
        kept = conn.scalar(select(func.count()).select_from(sendgrid_events))
    assert kept == 2 * 50 and poster.posted > kept


def test_without_events_an_in_doubt_batch_of_an_smtp_send_is_the_operators_at_once(
    settings: Settings, site: tuple[str, Store]
) -> None:
    _url, store = site
    first = jobs.send(settings, store, EDITION, backend="outbox", limit=1)
    store.sends.claim_batch(first.send_id)  # a crash mid-batch
    resumed = jobs.send(settings, store, EDITION, resume=True)
    assert resumed.awaiting_events == [] and resumed.in_doubt_batches == [2]
    assert "--retry-in-doubt" in resumed.note and "SendGrid" not in resumed.note
