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

from sqlalchemy import case, distinct, func, or_, select

from digest.store import Store
from digest.store.events import sendgrid_events as events
from digest.store.tables import send_batches, sends, stories, suppressions


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
    """event kind -> its counts, for one edition; two queries.

    Written for the index (edition, event, email, machine_open), which holds every
    column the first query reads: it counts from the index alone, in its order, and
    never reads the table (a nested GROUP BY reader took 8 s for a million events on
    SQLite, this under one: docs/benchmarks.md).
    """
    human = func.count(distinct(case((_human, events.c.email))))
    query = (
        select(
            events.c.event,
            func.count(),
            func.count(distinct(events.c.email)),
            func.sum(case((events.c.email.is_(None), 1), else_=0)),
            human,
        )
        .where(events.c.edition == edition)
        .group_by(events.c.event)
    )
    # A reader whose every bounce was a temporary "blocked": bounces are few, so the
    # table is read for them alone.
    lasting = (
        select(func.count(distinct(events.c.email)))
        .where(
            events.c.edition == edition,
            events.c.event == "bounce",
            or_(events.c.detail.is_(None), events.c.detail != "blocked"),
        )
        .scalar_subquery()
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
        lasting_bounces = (
            int(conn.scalar(select(lasting)) or 0) if any(row[0] == "bounce" for row in rows) else 0
        )
    counts = {}
    for kind, n, readers, anonymous, human_readers in rows:
        readers, human_readers = int(readers or 0), int(human_readers or 0)
        counts[str(kind)] = KindCount(
            event=str(kind),
            events=int(n or 0),
            readers=readers,
            anonymous=int(anonymous or 0),
            machine_readers=readers - human_readers if kind == "open" else 0,
            blocked_readers=readers - lasting_bounces if kind == "bounce" else 0,
        )
    return counts


def place_counts(store: Store, edition: str) -> list[PlaceCount]:
    """Clicks per link place (slot, position, story), for one edition; one query. Clicks
    on links that are no story's (the website, View in browser) are the place with slot
    "" (one pass over the clicks for both)."""
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
        .where(events.c.edition == edition, events.c.event == "click")
        .group_by(events.c.slot, events.c.position)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [
        PlaceCount(s or "", int(p or 0), None if i is None else int(i), int(c), int(u or 0))
        for s, p, i, c, u in rows
    ]


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
    """The trend's figures for these editions, oldest first; two queries, both counted
    from the index (edition, event, email, machine_open) alone."""
    if not editions:
        return []
    names = list(editions)
    query = (
        select(
            events.c.edition,
            events.c.event,
            func.count(distinct(case((_human, events.c.email)))),
            func.sum(case((events.c.email.is_(None), 1), else_=0)),
        )
        .where(events.c.edition.in_(names), events.c.event.in_(("delivered", "open", "click")))
        .group_by(events.c.edition, events.c.event)
    )
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    with store.begin() as conn:
        for name, kind, readers, anonymous in conn.execute(query):
            counts[(str(name), str(kind))] = (int(readers or 0), int(anonymous or 0))
        recipients = {
            str(name): int(count)
            for name, count in conn.execute(
                select(sends.c.edition, sends.c.recipients).where(sends.c.edition.in_(names))
            )
        }
    rows = []
    for name in sorted(names):
        delivered = counts.get((name, "delivered"), (0, 0))[0]
        openers = counts.get((name, "open"), (0, 0))[0]
        clickers, anonymous = counts.get((name, "click"), (0, 0))
        rows.append(
            TrendRow(name, recipients.get(name, 0), delivered, openers, clickers, anonymous)
        )
    return rows


def last_digest_clicks(store: Store, edition: str) -> tuple[str, dict[str, int]] | None:
    """The last edition sent before this one, and its readers' clicks per story URL
    (once per reader per story; each click without a reader once), or None."""
    counted = func.count(distinct(events.c.email)) + func.sum(
        case((events.c.email.is_(None), 1), else_=0)
    )
    with store.begin() as conn:
        last = conn.scalar(select(func.max(sends.c.edition)).where(sends.c.edition < edition))
        if last is None:
            return None
        rows = conn.execute(
            select(stories.c.url, counted)
            .select_from(events.join(stories, stories.c.id == events.c.story_id))
            .where(events.c.edition == last, events.c.event == "click")
            .group_by(stories.c.url)
        ).all()
    return str(last), {url: int(n or 0) for url, n in rows}
