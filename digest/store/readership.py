"""The report's queries: what readers did with an edition, counted by the database.

Every figure is a GROUP BY over the events table (store/events.py) or the send ledger;
no event is loaded into Python, so an edition of a million events reports in the time
the database takes to read its index range (docs/benchmarks.md). digest.readership
turns these counts into the report.

"Unique" is COUNT(DISTINCT email): once per reader. A first-party click without a
reader (per-reader tracking off) has no email, so it is counted as a click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, and_, case, distinct, func, literal, or_, select

from digest.store import Store
from digest.store.events import sendgrid_events as events
from digest.store.tables import send_batches, sends, suppressions


@dataclass(frozen=True)
class KindCount:
    """One kind of event of an edition: how many, and from how many readers."""

    event: str
    events: int
    readers: int  # distinct known readers
    anonymous: int  # events without a reader (first-party clicks, per-reader tracking off)
    machine_readers: int  # opens: readers whose opens were all flagged as machine opens
    blocked_readers: int  # bounces: readers whose bounce was a temporary "blocked"


@dataclass(frozen=True)
class PlaceCount:
    """Clicks on one link place of an edition."""

    slot: str
    position: int
    story_id: int | None
    clicks: int  # every click
    counted: int  # once per reader per link; each anonymous click once


@dataclass(frozen=True)
class LedgerCount:
    """What the send ledger says of an edition: its send's recipients and how far it got."""

    backend: str
    state: str
    recipients: int
    sent: int  # recipients of batches recorded sent
    started: datetime


@dataclass(frozen=True)
class TrendRow:
    """One edition in the trend: the few figures the chart and table show."""

    edition: str
    recipients: int
    delivered: int
    human_openers: int
    clickers: int
    anonymous_clicks: int


_human = or_(events.c.machine_open.is_(None), events.c.machine_open.is_(False))


def ledger(store: Store, edition: str) -> LedgerCount | None:
    with store.begin() as conn:
        row = conn.execute(select(sends).where(sends.c.edition == edition)).first()
        if row is None:
            return None
        sent = conn.scalar(
            select(func.coalesce(func.sum(send_batches.c.size), 0)).where(
                send_batches.c.send_id == row.id, send_batches.c.state == "sent"
            )
        )
    return LedgerCount(row.backend, row.state, int(row.recipients), int(sent or 0), row.created_at)


def kind_counts(store: Store, edition: str) -> dict[str, KindCount]:
    """event kind -> its counts, for one edition; one query."""
    # A reader counts as a machine opener when every open of theirs was flagged: a
    # reader with one real open is a human opener (computed per reader, then summed).
    per_reader = (
        select(
            events.c.event,
            events.c.email,
            func.count().label("n"),
            func.max(case((_human, 1), else_=0)).label("human"),
            func.max(case((events.c.detail == "blocked", 1), else_=0)).label("blocked"),
            func.min(case((events.c.detail == "blocked", 1), else_=0)).label("only_blocked"),
        )
        .where(events.c.edition == edition)
        .group_by(events.c.event, events.c.email)
        .subquery()
    )
    known = per_reader.c.email.is_not(None)
    query = select(
        per_reader.c.event,
        func.sum(per_reader.c.n),
        func.sum(case((known, 1), else_=0)),
        func.sum(case((known, 0), else_=per_reader.c.n)),
        func.sum(case((and_(known, per_reader.c.event == "open", per_reader.c.human == 0), 1),
                      else_=0)),
        func.sum(case((and_(known, per_reader.c.only_blocked == 1), 1), else_=0)),
    ).group_by(per_reader.c.event)  # fmt: skip
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return {
        str(kind): KindCount(str(kind), int(n or 0), int(r or 0), int(a or 0), int(m or 0),
                             int(b or 0))
        for kind, n, r, a, m, b in rows
    }  # fmt: skip


def place_counts(store: Store, edition: str) -> list[PlaceCount]:
    """Clicks per link place (slot, position, story), for one edition; one query."""
    counted = func.count(distinct(events.c.email)) + func.sum(
        case((events.c.email.is_(None), 1), else_=0)
    )
    query = (
        select(
            events.c.slot,
            events.c.position,
            func.max(events.c.story_id),
            func.count(),
            counted,
        )
        .where(events.c.edition == edition, events.c.event == "click", events.c.slot.is_not(None))
        .group_by(events.c.slot, events.c.position)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [
        PlaceCount(str(s), int(p or 0), None if i is None else int(i), int(c), int(u or 0))
        for s, p, i, c, u in rows
    ]


def unplaced_clicks(store: Store, edition: str) -> int:
    """Clicks on links that are no story's (the website, View in browser)."""
    with store.begin() as conn:
        return int(
            conn.scalar(
                select(func.count()).where(
                    events.c.edition == edition, events.c.event == "click", events.c.slot.is_(None)
                )
            )
            or 0
        )


def own_link_unsubscribes(store: Store, start: datetime, end: datetime | None) -> int:
    """Readers who left through the digest's own unsubscribe link or one-click header
    between two sends (the unsubscribe token names no edition)."""
    where = [
        suppressions.c.reason == "unsubscribed",
        suppressions.c.source.in_(("web", "one-click")),
        suppressions.c.created_at >= start,
    ]
    if end is not None:
        where.append(suppressions.c.created_at < end)
    with store.begin() as conn:
        return int(conn.scalar(select(func.count()).where(*where)) or 0)


def next_send_start(store: Store, edition: str) -> datetime | None:
    with store.begin() as conn:
        return conn.scalar(select(func.min(sends.c.created_at)).where(sends.c.edition > edition))


def sent_editions(store: Store, limit: int, before: str | None = None) -> list[str]:
    """The newest editions that have a send, newest first."""
    query = select(sends.c.edition).order_by(sends.c.edition.desc()).limit(limit)
    if before is not None:
        query = query.where(sends.c.edition <= before)
    with store.begin() as conn:
        return [str(name) for name in conn.scalars(query)]


def trend(store: Store, editions: Sequence[str]) -> list[TrendRow]:
    """The trend's figures for these editions, oldest first; two queries."""
    if not editions:
        return []
    names = list(editions)
    per_reader = (
        select(
            events.c.edition,
            events.c.email,
            func.max(case((events.c.event == "delivered", 1), else_=0)).label("delivered"),
            func.max(case((and_(events.c.event == "open", _human), 1), else_=0)).label("opened"),
            func.max(case((events.c.event == "click", 1), else_=0)).label("clicked"),
            func.sum(case((events.c.event == "click", 1), else_=0)).label("clicks"),
        )
        .where(events.c.edition.in_(names))
        .group_by(events.c.edition, events.c.email)
        .subquery()
    )
    known = per_reader.c.email.is_not(None)
    query = select(
        per_reader.c.edition,
        func.sum(case((known, per_reader.c.delivered), else_=0)),
        func.sum(case((known, per_reader.c.opened), else_=0)),
        func.sum(case((known, per_reader.c.clicked), else_=0)),
        func.sum(case((known, literal(0, Integer)), else_=per_reader.c.clicks)),
    ).group_by(per_reader.c.edition)
    with store.begin() as conn:
        counts = {str(row[0]): row[1:] for row in conn.execute(query)}
        recipients = {
            str(name): int(count)
            for name, count in conn.execute(
                select(sends.c.edition, sends.c.recipients).where(sends.c.edition.in_(names))
            )
        }
    rows = []
    for name in sorted(names):
        d, o, c, a = (int(v or 0) for v in counts.get(name, (0, 0, 0, 0)))
        rows.append(TrendRow(name, int(recipients.get(name, 0)), d, o, c, a))
    return rows
