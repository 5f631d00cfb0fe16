"""What happened to each message and each link of an edition: the providers' events
(SendGrid's Event Webhook) and the first-party clicks (digest.clicks), one table; and the
queries that settle the batches a crash left in doubt.

Beside tables.py (which holds the other tables): the sendgrid_events table, and
the few ledger queries that only the in-doubt rules need (send/doubt.py, send/ledger.py).
The report's queries over this table are in store/readership.py.

One table for every kind of event, not one per kind or per source: the report counts
them together (a click is a click, whoever saw it), SendGrid's delivery events settle
batches from the same rows, and one key (sg_event_id) is what keeps a repeat out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    func,
    select,
    update,
)

from digest.models import Batch
from digest.store import Store
from digest.store.tables import (
    UTCDateTime,
    claimed_batch,
    edition_picks,
    metadata,
    now,
    send_batches,
    stories,
)

#: One row per event, keyed by the provider's own sg_event_id: SendGrid may post an
#: event more than once ("Duplicate events", Event Webhook Reference), so a repeat
#: is dropped here. Only events tied to an edition of ours (custom_args edition and
#: batch, or a first-party click's signed link) are kept. The name is from when only
#: SendGrid's delivery events were kept; `source` says whose event a row is.
sendgrid_events = Table(
    "sendgrid_events",
    metadata,
    Column("sg_event_id", String(100), primary_key=True),
    Column("edition", String(10), nullable=False),
    Column("batch", Integer, nullable=True),  # None: a first-party click
    # The reader, lower-case; None: a first-party click without per-reader tracking.
    Column("email", String(320), nullable=True),
    # processed | dropped | deferred | delivered | bounce | open | click | spamreport |
    # unsubscribe | group_unsubscribe
    Column("event", String(20), nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),  # when the provider says it happened
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(20), nullable=False, server_default="sendgrid"),  # or first-party
    # A click: the place of the link in the edition (lead, more, related, most_read;
    # position as in edition_picks) and its story; the URL as clicked.
    Column("slot", String(20), nullable=True),
    Column("position", Integer, nullable=True),
    Column("story_id", Integer, nullable=True),
    Column("url", String(2000), nullable=True),
    # An open: SendGrid's sg_machine_open, True when a mail client's proxy fetched the
    # pictures (Apple Mail Privacy Protection), not the reader.
    Column("machine_open", Boolean, nullable=True),
    # A bounce's type (bounce | blocked), a drop's reason: cut to 200 characters.
    Column("detail", String(200), nullable=True),
    Index("ix_sendgrid_events_batch", "edition", "batch"),
    # The report's counts read this index alone (store/readership.py).
    Index("ix_sendgrid_events_kind", "edition", "event", "email", "machine_open"),
)

#: send_batches.settled_by for a batch SendGrid's events settled.
BY_EVENTS = "events"
#: The events SendGrid emits for a message only once it has accepted its request.
DELIVERY_KINDS = ("processed", "dropped", "deferred", "delivered", "bounce")
SENDGRID = "sendgrid"
FIRST_PARTY = "first-party"

_COLUMNS = (
    "sg_event_id", "edition", "batch", "email", "event", "timestamp", "received_at",
    "source", "slot", "position", "story_id", "url", "machine_open", "detail",
)  # fmt: skip


@dataclass(frozen=True)
class ReaderEvent:
    """One event about one message of an edition, or one click on one of its links."""

    sg_event_id: str
    edition: str
    batch: int | None
    email: str | None
    event: str
    timestamp: datetime
    source: str = SENDGRID
    slot: str | None = None
    position: int | None = None
    story_id: int | None = None
    url: str | None = None
    machine_open: bool | None = None
    detail: str | None = None


def record_events(store: Store, events: Sequence[ReaderEvent]) -> int:
    """Keep the events; one already kept (same sg_event_id) is skipped. Returns how many
    distinct events were handed in (a repeat within `events` counts once).

    Straight through the driver's executemany, the times processed once each: SQLAlchemy's
    per-row parameter processing was most of the cost of a webhook post.
    """
    if not events:
        return 0
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
                e.source,
                e.slot,
                e.position,
                e.story_id,
                e.url,
                e.machine_open,
                e.detail,
            )
            for e in events
        }
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(
            f"INSERT INTO sendgrid_events ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))}) ON CONFLICT (sg_event_id) DO NOTHING",
            list(rows.values()),
        )
    return len(rows)


def pick_places(store: Store, edition: str) -> list[tuple[str, int, int, str]]:
    """(slot, position, story id, story URL) of every pick of an edition, the lead first:
    where a click on a story link lands in the report."""
    order = {"lead": 0, "more": 1, "related": 2, "most_read": 3}
    with store.begin() as conn:
        rows = conn.execute(
            select(
                edition_picks.c.slot,
                edition_picks.c.position,
                edition_picks.c.story_id,
                stories.c.url,
            )
            .join(stories, stories.c.id == edition_picks.c.story_id)
            .where(edition_picks.c.edition == edition)
        ).all()
    places = [(str(s), int(p), int(i), str(u)) for s, p, i, u in rows]
    return sorted(places, key=lambda place: (order.get(place[0], 9), place[1]))


def event_counts(store: Store, edition: str, batches: Iterable[int]) -> dict[int, dict[str, int]]:
    """batch -> {event: how many} for these batches of an edition (none: not in the dict)."""
    numbers = list(batches)
    if not numbers:
        return {}
    counts: dict[int, dict[str, int]] = {}
    with store.begin() as conn:
        rows = conn.execute(
            select(sendgrid_events.c.batch, sendgrid_events.c.event, func.count())
            .where(
                sendgrid_events.c.edition == edition,
                sendgrid_events.c.batch.in_(numbers),
                # Only what SendGrid emits once it took a request settles a batch.
                sendgrid_events.c.event.in_(DELIVERY_KINDS),
            )
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
