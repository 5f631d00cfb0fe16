"""send to the outbox: one RFC 5322 message per active, valid subscriber; exactly once."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest import jobs
from digest.config import Settings
from digest.subscribers import verify_token

DAY = date(2025, 12, 5)
ACTIVE_VALID = {
    "ana.lopez@example.com",
    "ben.tanaka@example.org",
    "renee.obrien@example.com",
    "carlos.mendes@example.org",
    "dana.kim@example.com",
    "erin.walsh@example.com",
    "grace.liu@example.com",
    "henry.jackson@example.org",
    "isla.martin@example.com",
}


@pytest.fixture
def run_settings(settings: Settings, db_url: str) -> Settings:
    return replace(settings, database_url=db_url)


def _messages(folder: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(folder.glob("*.eml"))
    ]


def test_run_delivers_one_message_per_active_valid_subscriber(run_settings: Settings) -> None:
    store = jobs.open_store(run_settings)
    summary = jobs.run(run_settings, store, DAY)
    assert summary.send.state == "done"
    assert summary.outbox is not None
    messages = _messages(summary.outbox)
    recipients = sorted(m["To"].addresses[0].addr_spec for m in messages)
    assert recipients == sorted(ACTIVE_VALID)
    assert "frank.nguyen@example.org" not in recipients  # unsubscribed
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
        assert set(parts) == {"text/plain", "text/html"}
        assert message["Subject"] == summary.edition.subject
        assert message["Message-ID"] and message["Date"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = message["List-Unsubscribe"]
        assert "<mailto:unsubscribe@news.example.org?subject=unsubscribe%20" in unsubscribe
        url = unsubscribe.split("<", 1)[1].split(">", 1)[0]
        assert url.startswith("http://localhost:8000/unsubscribe/")
        # The signed token names this recipient and nobody else.
        token = url.rsplit("/", 1)[1]
        assert verify_token(run_settings.secret_key, token) == message["To"].addresses[0].addr_spec
        assert verify_token(b"another key", token) is None
        # The same link is in the footer of both parts; no token is left unfilled.
        assert url in parts["text/html"] and url in parts["text/plain"]
        assert "%%" not in parts["text/html"] and "%%" not in parts["text/plain"]
    ana = next(m for m in messages if m["To"].addresses[0].addr_spec.startswith("ana."))
    assert "Good morning, Ana Lopez." in ana.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    renee = next(m for m in messages if m["To"].addresses[0].addr_spec.startswith("renee"))
    assert "Good morning, Renée O&#x27;Brien." in renee.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_second_run_sends_nobody_twice(run_settings: Settings) -> None:
    store = jobs.open_store(run_settings)
    first = jobs.run(run_settings, store, DAY)
    assert first.outbox is not None
    before = {p.name: p.stat().st_mtime_ns for p in first.outbox.glob("*.eml")}
    second = jobs.run(run_settings, store, DAY)
    assert second.send.sent_now == 0
    assert second.send.sent == len(ACTIVE_VALID)
    after = {p.name: p.stat().st_mtime_ns for p in first.outbox.glob("*.eml")}
    assert after == before


def test_a_crash_mid_send_leaves_the_batch_in_doubt_and_it_is_not_resent(
    run_settings: Settings,
) -> None:
    settings = replace(run_settings, delivery=replace(run_settings.delivery, batch_size=2))
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    first = jobs.send(settings, store, DAY.isoformat(), limit=2)
    # Batches hold readers of one section preference: the three with none make
    # batches 1 (2) and 2 (1); the six others each have their own, of one reader.
    assert (first.sent, first.pending) == (3, 6)
    # A crash between "sending" and "sent": claim a batch and never finish it.
    send_id = store.sends.get_send(DAY.isoformat()).id
    crashed = store.sends.claim_batch(send_id)
    assert crashed is not None and crashed.number == 3
    with pytest.raises(Exception, match="--resume"):
        jobs.send(settings, store, DAY.isoformat())
    resumed = jobs.send(settings, store, DAY.isoformat(), resume=True)
    assert resumed.in_doubt == 1 and resumed.in_doubt_batches == [3]
    assert resumed.sent == 8 and resumed.state == "incomplete"
    assert "--retry-in-doubt" in resumed.note
    finished = jobs.send(settings, store, DAY.isoformat(), resume=True, retry_in_doubt=True)
    assert (finished.sent, finished.in_doubt, finished.state) == (9, 0, "done")


def test_test_send_marks_subject_and_records_nothing(settings: Settings) -> None:
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.draft(settings, store, DAY)
    assert jobs.send_test(settings, store, DAY.isoformat(), ["editor@example.org"]) == 1
    messages = _messages(settings.delivery.outbox_dir / f"test-{DAY.isoformat()}")
    assert len(messages) == 1
    assert messages[0]["Subject"].startswith("[TEST] Trump to meet Putin")
    assert store.sends.get_send(DAY.isoformat()) is None


def test_a_test_copy_of_one_section_preference(settings: Settings) -> None:
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.draft(settings, store, DAY)
    jobs.send_test(settings, store, DAY.isoformat(), ["editor@example.org"], sections="Arts")
    (message,) = _messages(settings.delivery.outbox_dir / f"test-{DAY.isoformat()}")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    whole = jobs.render_edition(settings, store, DAY.isoformat()).text

    def more_in(text: str) -> str:
        return text.split("MORE IN NEWS", 1)[1].split("MOST READ", 1)[0]

    assert "Gallery Walk" in more_in(text)  # the Arts story
    assert "fiber-optic" in more_in(whole)  # a News story, which this reader did not choose
    assert "fiber-optic" not in more_in(text)
    assert message["Subject"].startswith("[TEST] Trump to meet Putin")  # the lead is for all
    assert store.sends.get_send(DAY.isoformat()) is None


def test_the_outbox_records_each_recipient_and_a_retry_rewrites_none_of_their_files(
    run_settings: Settings,
) -> None:
    store = jobs.open_store(run_settings)
    first = jobs.run(run_settings, store, DAY)
    assert first.outbox is not None and first.send.state == "done"
    send_id = first.send.send_id
    # As if the process had died after the files and their record, before "sent":
    # the batch is in doubt, and resending it in doubt writes none of its files again.
    store.sends.finish_batch(send_id, 1, "sending")
    before = {p.name: p.stat().st_mtime_ns for p in first.outbox.glob("*.eml")}
    retried = jobs.send(run_settings, store, DAY.isoformat(), resume=True, retry_in_doubt=True)
    after = {p.name: p.stat().st_mtime_ns for p in first.outbox.glob("*.eml")}
    assert after == before
    assert (retried.state, retried.sent, retried.sent_now) == ("done", len(ACTIVE_VALID), 0)
    from digest.store import delivery

    batches = range(1, first.send.batches + 1)
    recorded = set().union(*(delivery.tally(store, send_id, b).accepted for b in batches))
    store.close()
    assert recorded == ACTIVE_VALID
