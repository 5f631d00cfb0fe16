"""SendGrid's delivery events, and the queries that settle the batches a crash left in doubt.

Beside tables.py (which holds the other tables): the sendgrid_events table, and
the few ledger queries that only the in-doubt rules need (send/doubt.py, send/ledger.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, func, select, update

from digest.models import Batch
from digest.store import Store
from digest.store.tables import (
    UTCDateTime,
    claimed_batch,
    metadata,
    now,
    send_batches,
)

#: One row per event, keyed by SendGrid's own sg_event_id: SendGrid may post an
#: event more than once ("Duplicate events", Event Webhook Reference), so a repeat
#: is dropped here. Only events tied to a batch of ours (custom_args edition and
#: batch) are kept.
sendgrid_events = Table(
    "sendgrid_events",
    metadata,
    Column("sg_event_id", String(100), primary_key=True),
    Column("edition", String(10), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("email", String(320), nullable=False),
    Column("event", String(20), nullable=False),  # processed | dropped | deferred | ...
    Column("timestamp", UTCDateTime, nullable=False),  # when SendGrid says it happened
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_sendgrid_events_batch", "edition", "batch"),
)

#: send_batches.settled_by for a batch SendGrid's events settled.
BY_EVENTS = "events"


@dataclass(frozen=True)
class DeliveryEvent:
    """One SendGrid event about one message of one batch."""

    sg_event_id: str
    edition: str
    batch: int
    email: str
    event: str
    timestamp: datetime


def record_events(store: Store, events: Sequence[DeliveryEvent]) -> None:
    """Keep the events; one SendGrid already posted (same sg_event_id) is skipped.

    Straight through the driver's executemany, the times processed once each: SQLAlchemy's
    per-row parameter processing was most of the cost of a webhook post.
    """
    if not events:
        return
    with store.begin() as conn:
        processor = sendgrid_events.c.timestamp.type.bind_processor(conn.dialect)
        convert = processor or (lambda value: value)
        received = convert(now())
        times: dict[datetime, Any] = {}
        rows = {
            e.sg_event_id: (
                e.sg_event_id,
                e.edition,
                e.batch,
                e.email,
                e.event,
                times[e.timestamp]
                if e.timestamp in times
                else times.setdefault(e.timestamp, convert(e.timestamp)),
                received,
            )
            for e in events
        }
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(
            "INSERT INTO sendgrid_events "
            "(sg_event_id, edition, batch, email, event, timestamp, received_at) "
            f"VALUES ({', '.join([mark] * 7)}) ON CONFLICT (sg_event_id) DO NOTHING",
            list(rows.values()),
        )


def event_counts(store: Store, edition: str, batches: Iterable[int]) -> dict[int, dict[str, int]]:
    """batch -> {event: how many} for these batches of an edition (none: not in the dict)."""
    numbers = list(batches)
    if not numbers:
        return {}
    counts: dict[int, dict[str, int]] = {}
    with store.begin() as conn:
        rows = conn.execute(
            select(sendgrid_events.c.batch, sendgrid_events.c.event, func.count())
            .where(sendgrid_events.c.edition == edition, sendgrid_events.c.batch.in_(numbers))
            .group_by(sendgrid_events.c.batch, sendgrid_events.c.event)
        )
        for number, event, count in rows:
            counts.setdefault(int(number), {})[event] = int(count)
    return counts


def settle_as_sent(store: Store, send_id: int, number: int) -> bool:
    """An in-doubt batch becomes sent, settled by events. False if it is no longer in doubt."""
    with store.begin() as conn:
        changed = conn.execute(
            update(send_batches)
            .where(
                send_batches.c.send_id == send_id,
                send_batches.c.number == number,
                send_batches.c.state == "sending",
            )
            .values(state="sent", settled_by=BY_EVENTS, updated_at=now())
        ).rowcount
    return bool(changed)


def settled_by_events(store: Store, send_id: int) -> list[tuple[int, int]]:
    """(number, size) of the batches SendGrid's events settled."""
    with store.begin() as conn:
        rows = conn.execute(
            select(send_batches.c.number, send_batches.c.size)
            .where(send_batches.c.send_id == send_id, send_batches.c.settled_by == BY_EVENTS)
            .order_by(send_batches.c.number)
        )
        return [(int(number), int(size)) for number, size in rows]


def requeue_in_doubt(store: Store, send_id: int, numbers: Sequence[int]) -> int:
    """Put these in-doubt batches back to pending (the operator said so). Returns recipients."""
    if not numbers:
        return 0
    doubtful = (
        send_batches.c.send_id == send_id,
        send_batches.c.number.in_(list(numbers)),
        send_batches.c.state == "sending",
    )
    with store.begin() as conn:
        size = conn.scalar(select(func.sum(send_batches.c.size)).where(*doubtful))
        conn.execute(
            update(send_batches).where(*doubtful).values(state="pending", updated_at=now())
        )
    return int(size or 0)


def claimed_with(store: Store, send_id: int, token: str) -> Batch | None:
    """The batch a claim with this token took, if its commit went through after all."""
    with store.begin() as conn:
        row = conn.execute(
            select(
                send_batches.c.number,
                send_batches.c.recipients,
                send_batches.c.attempts,
                send_batches.c.sections,
                send_batches.c.variant,
            ).where(
                send_batches.c.send_id == send_id,
                send_batches.c.claim == token,
                send_batches.c.state == "sending",
            )
        ).first()
    return None if row is None else claimed_batch(send_id, row)
