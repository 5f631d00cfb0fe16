"""store: the same queries on SQLite and PostgreSQL; never resubscribe; the batch ledger."""

from __future__ import annotations

from digest.models import Recipient, Subscriber
from digest.store import Store


def test_import_never_reactivates_someone_who_left(store: Store) -> None:
    store.subscribers.upsert_subscribers([Subscriber("a@example.com"), Subscriber("b@example.com")])
    store.subscribers.suppress("a@example.com", "bounced", source="webhook")
    added, updated, kept_out = store.subscribers.upsert_subscribers(
        [Subscriber("A@example.com".lower(), status="active"), Subscriber("c@example.com")]
    )
    assert (added, updated, kept_out) == (1, 1, 1)
    assert store.subscribers.count_subscribers() == {"active": 2, "bounced": 1}
    assert [s.email for s in store.subscribers.deliverable()] == ["b@example.com", "c@example.com"]


def test_unsubscribed_in_a_file_becomes_a_suppression(store: Store) -> None:
    store.subscribers.upsert_subscribers([Subscriber("gone@example.org", status="unsubscribed")])
    assert store.subscribers.suppressed(["gone@example.org"]) == {
        "gone@example.org": "unsubscribed"
    }
    store.subscribers.upsert_subscribers([Subscriber("gone@example.org", status="active")])
    assert list(store.subscribers.deliverable()) == []


def test_deliverable_streams_in_chunks(store: Store) -> None:
    store.subscribers.upsert_subscribers([Subscriber(f"r{i:04d}@example.com") for i in range(1203)])
    emails = [s.email for s in store.subscribers.deliverable(chunk=100)]
    assert len(emails) == 1203 and emails == sorted(emails)


def test_ledger_claims_in_order_and_records_states(store: Store) -> None:
    from datetime import UTC, datetime

    from digest.models import Edition

    now = datetime(2025, 12, 5, tzinfo=UTC)
    store.editions.save_edition(Edition("2025-12-05", now, now, now, "s", "p", None))
    batches = [[Recipient(f"r{i}-{j}@example.com") for j in range(3)] for i in range(4)]
    send_id = store.sends.create_send("2025-12-05", "outbox", iter(batches))
    first = store.sends.claim_batch(send_id)
    second = store.sends.claim_batch(send_id)
    assert first is not None and second is not None
    assert (first.number, second.number) == (1, 2)
    assert first.recipients == batches[0]
    store.sends.finish_batch(send_id, 1, "sent", response_code=202, message_id="m1")
    store.sends.finish_batch(send_id, 2, "failed", response_code=400, error="bad")
    assert store.sends.batch_states(send_id) == {
        "sent": (1, 3),
        "failed": (1, 3),
        "pending": (2, 6),
    }
    assert store.sends.requeue_batches(send_id, ["failed"]) == 3
    assert store.sends.batch_states(send_id)["pending"] == (3, 9)


def test_the_first_suppression_reason_stands(store: Store) -> None:
    store.subscribers.upsert_subscribers([Subscriber("reader@example.org", "Reader")])
    assert (
        store.subscribers.suppress("Reader@Example.org", "unsubscribed", source="one-click") is True
    )
    # A bounce event arriving later changes neither the suppression nor the status.
    assert (
        store.subscribers.suppress("reader@example.org", "bounced", source="sendgrid:bounce")
        is False
    )
    assert store.subscribers.suppressed(["reader@example.org"]) == {
        "reader@example.org": "unsubscribed"
    }
    assert [s.status for s in store.subscribers.iter_subscribers()] == ["unsubscribed"]


def test_suppressing_many_at_once_follows_the_same_rules(store: Store) -> None:
    # A webhook post's suppressions go in one transaction (suppress_all): the first
    # reason still stands, within the post and against earlier ones, and only the
    # addresses not suppressed before count as new.
    store.subscribers.upsert_subscribers(
        [Subscriber(f"r{i}@example.org") for i in range(1200)] + [Subscriber("old@example.org")]
    )
    store.subscribers.suppress("old@example.org", "unsubscribed", source="one-click")
    items = [(f"R{i}@Example.org", "bounced", "sendgrid:bounce") for i in range(1200)]
    items += [("r7@example.org", "complained", "sendgrid:spamreport")]  # later in the post
    items += [
        ("old@example.org", "bounced", "sendgrid:bounce"),
        ("nobody@example.org", "bounced", ""),
    ]
    added = store.subscribers.suppress_all(items)
    assert added == {f"r{i}@example.org" for i in range(1200)} | {"nobody@example.org"}
    reasons = store.subscribers.suppressed(
        ["r7@example.org", "old@example.org", "r1199@example.org"]
    )
    assert reasons == {
        "r7@example.org": "bounced",
        "old@example.org": "unsubscribed",
        "r1199@example.org": "bounced",
    }
    statuses = {s.email: s.status for s in store.subscribers.iter_subscribers()}
    assert statuses["old@example.org"] == "unsubscribed"
    assert {statuses[f"r{i}@example.org"] for i in range(1200)} == {"bounced"}
    assert store.subscribers.suppress_all(items) == set()  # a repeated post changes nothing
    assert store.subscribers.suppress_all([]) == set()
