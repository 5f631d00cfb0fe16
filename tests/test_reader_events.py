"""Every provider event kept once, clicks tied to the story they were on, the newsroom's
own click links, and the report that counts them (digest.readership).

Real parts: the web app on uvicorn receiving signed Event Webhook posts and click
requests over HTTP; a SendGrid-compatible server taking the send; SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted_newsroom, with_delivery
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from fakes.sendgrid_webhook import WebhookKey
from sqlalchemy import func, select
from test_web import serving

from digest import config, jobs, readership
from digest.clicks import Place, link_token
from digest.config import Settings
from digest.models import Subscriber
from digest.send.sendgrid_events import KEY_VARIABLE
from digest.store import Store
from digest.store.events import sendgrid_events
from digest.store.readership import last_digest_clicks
from digest.web import create_app

READERS = [Subscriber(f"reader{i:03d}@example.org", f"Reader {i}") for i in range(30)]
PASSWORD = "editor-password"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Settings:
    loaded = drafted_newsroom(tmp_path_factory.mktemp("report-newsroom"), db_url)
    return with_delivery(loaded, batch_size=10, retry_base_delay=0.01)


@pytest.fixture
def key() -> WebhookKey:
    return WebhookKey()


def _env(settings: Settings, **env: str) -> Settings:
    return replace(settings, env={**settings.env, **env})


@pytest.fixture
def site(settings: Settings, key: WebhookKey) -> Iterator[tuple[str, Store, Settings]]:
    """The edition sent through SendGrid (our fake) to READERS; `digest web` serving."""
    store = Store.open(settings.database_url)
    store.subscribers.upsert_subscribers(READERS)
    room = _env(settings, **{KEY_VARIABLE: key.verification_key,
                             "DIGEST_EDITOR_PASSWORD": PASSWORD})  # fmt: skip
    with FakeSendGrid() as fake:
        sending = _env(room, SENDGRID_API_KEY=DEFAULT_KEY, SENDGRID_API_HOST=fake.url)
        result = jobs.send(sending, store, EDITION, backend="sendgrid")
        assert result.state == "done" and result.sent == len(READERS)
    with serving(create_app(room, store)) as url:
        yield url, store, room
    store.close()


def _picks(store: Store) -> dict[str, Any]:
    edition = store.editions.load_edition(EDITION)
    assert edition is not None and edition.lead is not None and len(edition.more) >= 3
    return {"lead": edition.lead, "more": edition.more, "most_read": edition.most_read}


def _post(url: str, key: WebhookKey, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = json.dumps(events).encode()
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=key.headers(body))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _stored(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.scalar(select(func.count()).select_from(sendgrid_events)) or 0)


def test_every_event_type_is_kept_once_and_the_report_counts_them(
    site: tuple[str, Store, Settings], key: WebhookKey
) -> None:
    url, store, _room = site
    picks = _picks(store)
    lead, third = picks["lead"].story, picks["more"][2].story
    stamp = int(time.time())
    numbers = iter(range(1, 10_000))
    batch_of = {
        r.email: str(i // 10 + 1) for i, r in enumerate(sorted(READERS, key=lambda r: r.email))
    }

    def event(reader: int, kind: str, **more: Any) -> dict[str, Any]:
        email = READERS[reader].email
        return {"email": email, "timestamp": stamp, "event": kind,
                "sg_event_id": f"ev{next(numbers)}", "edition": EDITION,
                "batch": batch_of[email], **more}  # fmt: skip

    events = [event(i, "processed") for i in range(30)]
    events += [event(i, "delivered") for i in range(27)]
    events += [event(27, "bounce", type="bounce"), event(28, "bounce", type="blocked")]
    events += [event(29, "dropped", reason="Bounced Address")]
    events += [event(3, "deferred")]
    # Opens: readers 0-9 opened; 5-9 only through Apple's proxy; 0 also once by proxy.
    events += [event(i, "open", sg_machine_open=False) for i in range(5)]
    events += [event(i, "open", sg_machine_open=True) for i in range(5, 10)]
    events += [event(0, "open", sg_machine_open=True)]
    # Clicks: the lead by readers 0, 1 (reader 0 twice); the third More story by 0, 2, 3, 4.
    tags = "?utm_source=digest&utm_content="
    events += [event(0, "click", url=lead.url), event(0, "click", url=lead.url)]
    events += [event(1, "click", url=lead.url + tags + "lead")]
    events += [event(i, "click", url=third.url) for i in (0, 2, 3, 4)]
    events += [event(5, "click", url="https://example.com/not-a-story")]
    events += [event(6, "spamreport"), event(7, "unsubscribe"), event(8, "group_unsubscribe")]
    # A repeat inside the post, and the whole post again: nothing is kept twice.
    first = _post(url, key, [*events, events[0], events[-1]])
    assert first["recorded"] == len(events)
    again = _post(url, key, events)
    assert again["recorded"] == len(events)
    assert _stored(store) == len(events)

    with store.begin() as conn:
        placed = conn.execute(
            select(sendgrid_events.c.slot, sendgrid_events.c.position, func.count())
            .where(sendgrid_events.c.event == "click")
            .group_by(sendgrid_events.c.slot, sendgrid_events.c.position)
        ).all()
    assert sorted(placed, key=str) == sorted(
        [("lead", 1, 3), ("more", 3, 4), (None, None, 1)], key=str
    )

    r = readership.report(store, EDITION)
    assert r is not None
    assert (r.recipients, r.sent, r.delivered) == (30, 30, 27)
    assert (r.bounced, r.blocked, r.dropped, r.deferred) == (1, 1, 1, 1)
    assert (r.complaints, r.unsubscribes_provider) == (1, 2)
    assert (r.unique_opens, r.machine_opens) == (5, 5)
    # Readers 0, 1, 2, 3, 4, 5 clicked something: six of 27 delivered.
    assert (r.unique_clicks, r.anonymous_clicks, r.click_base) == (6, 0, 27)
    assert r.click_rate == round(6 / 27, 4)
    by_place = {(p.slot, p.position): p.clicks for p in r.places}
    assert by_place == {("lead", 1): 2, ("more", 3): 4}  # once per reader per link
    assert [p.title for p in r.places] == [lead.title, third.title]
    assert r.clicks_per_slot == {"lead": 2, "more": 4} and r.other_clicks == 1
    assert [p.edition for p in r.trend] == [EDITION]
    # What the next day's ranking counts with [edition] digest_clicks_weight: the last
    # sent digest's clicks per story, once per reader.
    assert last_digest_clicks(store, "2099-01-01") == (EDITION, {lead.url: 2, third.url: 4})
    assert last_digest_clicks(store, EDITION) is None  # nothing was sent before it

    # The same figures on the editors' page, behind their login, with the chart.
    assert httpx.get(f"{url}/reports/{EDITION}").status_code == 401
    page = httpx.get(f"{url}/reports/{EDITION}", auth=("anna", PASSWORD))
    assert page.status_code == 200
    assert "<svg" in page.text and lead.title.split()[0] in page.text
    assert "22.2%" in page.text  # 6 of 27
    listing = httpx.get(f"{url}/reports", auth=("anna", PASSWORD))
    assert listing.status_code == 200 and f"reports/{EDITION}" in listing.text
    missing = httpx.get(f"{url}/reports/2020-01-01", auth=("anna", PASSWORD))
    assert missing.status_code == 404


def test_digest_report_prints_the_figures_and_json(
    site: tuple[str, Store, Settings], key: WebhookKey
) -> None:
    url, store, room = site
    stamp = int(time.time())
    _post(url, key, [
        {"email": READERS[0].email, "timestamp": stamp, "event": "delivered",
         "sg_event_id": "d0", "edition": EDITION, "batch": "1"},
        {"email": READERS[0].email, "timestamp": stamp, "event": "click",
         "sg_event_id": "c0", "edition": EDITION, "batch": "1",
         "url": _picks(store)["lead"].story.url},
    ])  # fmt: skip
    env = {**room.env, "PATH": str(Path(sys.executable).parent)}
    env["DIGEST_DATABASE_URL"] = room.database_url
    shown = subprocess.run(
        [sys.executable, "-m", "digest.cli", "report", EDITION, "--json", "-c", str(room.path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert (figures["delivered"], figures["unique_clicks"], figures["click_rate"]) == (1, 1, 1.0)
    assert figures["places"][0]["slot"] == "lead"
    text = subprocess.run(
        [sys.executable, "-m", "digest.cli", "report", EDITION, "-c", str(room.path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert text.returncode == 0 and "click rate" in text.stdout and "100.0%" in text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "digest.cli", "report", "yesterday", "-c", str(room.path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def _links(html: str, base_url: str) -> list[str]:
    return sorted(set(re.findall(re.escape(base_url) + r"/r/[A-Za-z0-9._/-]+", html)))


def test_first_party_click_links_record_the_click_and_redirect_to_the_story(
    settings: Settings,
) -> None:
    room = _env(replace(settings, click_tracking=True), DIGEST_EDITOR_PASSWORD=PASSWORD)
    store = Store.open(room.database_url)
    try:
        store.subscribers.upsert_subscribers(READERS)
        rendered = jobs.render_edition(room, store, EDITION)
        links = _links(rendered.html, room.base_url)
        picks = _picks(store)
        lead, second = picks["lead"].story, picks["more"][1].story
        assert lead.url not in rendered.html  # every story link goes through /r/
        assert f"{room.base_url}/r/" in rendered.text
        result = jobs.send(room, store, EDITION, backend="outbox")
        assert result.state == "done"
        with serving(create_app(room, store)) as url:
            by_story: dict[str, str] = {}
            for link in links:
                answer = httpx.get(url + link.removeprefix(room.base_url))
                assert answer.status_code == 302, answer.text
                by_story.setdefault(answer.headers["location"], link)
                assert answer.headers["referrer-policy"] == "no-referrer"
            assert {lead.url, second.url} <= set(by_story)
            # A second click on the lead: without a reader, each click counts.
            again = httpx.get(url + by_story[lead.url].removeprefix(room.base_url))
            assert again.headers["location"] == lead.url

            # Forged and tampered tokens go nowhere.
            token = by_story[lead.url].rsplit("/", 1)[-1]
            forged_place = link_token(b"another secret", EDITION, Place("lead", 1, lead.id or 1))
            tampered = token.replace(".lead.", ".more.")
            broken = (token[:-2] + "AA", "nonsense", "https:evil.example")
            for bad in (forged_place, tampered, *broken):
                answer = httpx.get(f"{url}/r/{bad}")
                assert answer.status_code == 404 and "location" not in answer.headers
                assert "broken" in answer.text
            r = readership.report(store, EDITION)
        assert r is not None and r.delivered is None  # the outbox reports no deliveries
        by_place = {(p.slot, p.position): p for p in r.places}
        assert by_place[("lead", 1)].clicks == 2 and by_place[("lead", 1)].title == lead.title
        assert by_place[("more", 2)].clicks == 1
        assert r.unique_clicks == 0 and r.anonymous_clicks == len(links) + 1
        assert _stored(store) == len(links) + 1
    finally:
        store.close()


def test_per_reader_tracking_needs_click_tracking(tmp_path: Path) -> None:
    path = copy_newsroom(tmp_path)
    path.write_text(
        path.read_text().replace("[web]\n", "[web]\nclick_tracking_per_reader = true\n")
    )
    with pytest.raises(config.ConfigError, match="click_tracking = true"):
        config.load(path, env={"DIGEST_SECRET_KEY": SECRET})


def test_per_reader_click_links_count_each_reader_once_per_link(settings: Settings) -> None:
    room = replace(settings, click_tracking=True, click_tracking_per_reader=True)
    readers = READERS[:3]
    store = Store.open(room.database_url)
    try:
        store.subscribers.upsert_subscribers(readers)
        result = jobs.send(room, store, EDITION, backend="outbox")
        assert result.state == "done" and result.sent == 3
        links: dict[str, list[str]] = {}
        for path in sorted(Path(room.delivery.outbox_dir).rglob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = message.get_body(("html",))
            assert body is not None
            found = _links(body.get_content(), room.base_url)
            links[str(message["To"])] = found
            assert found and all(link.count("/") == 5 for link in found)  # .../r/TOKEN/READER
            assert not any(message["To"].addresses[0].username in link for link in found)
        assert len(links) == 3
        lead = _picks(store)["lead"].story
        first, second = (links[k] for k in sorted(links)[:2])
        with serving(create_app(room, store)) as url:

            def lead_link(mine: list[str]) -> str:
                for link in mine:
                    answer = httpx.get(url + link.removeprefix(room.base_url))
                    if answer.headers["location"] == lead.url:
                        return link
                raise AssertionError("no link to the lead")

            a, b = lead_link(first), lead_link(second)
            assert a != b  # each reader's own link
            for _ in range(3):  # the first reader clicks the lead again and again
                assert httpx.get(url + a.removeprefix(room.base_url)).status_code == 302
            # Another reader's part on this link: the link still works; counted as nobody's.
            token = a.rsplit("/", 2)[-2]
            changed = httpx.get(f"{url}/r/{token}/{'A' * 40}")
            assert changed.status_code == 302
        r = readership.report(store, EDITION)
        assert r is not None
        lead_place = next(p for p in r.places if p.slot == "lead")
        # First reader once, second reader once, the changed reader part once.
        assert lead_place.clicks == 3
        assert r.unique_clicks == 2 and r.anonymous_clicks == 1  # two readers clicked
    finally:
        store.close()
