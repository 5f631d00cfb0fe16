"""What operators did to sends: who started, paused, resumed or resent what, and what the
ledger answered.

Beside tables.py, as events.py is: the send_actions table and its queries. One row per
action asked for, done or refused, so the sends page can say "paused by anna at 06:02"
the way edition_events says who changed an edition. The ledger (send_batches) says what
went out; this says who asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Integer, String, Table, Text, func, select

from digest.store import Store
from digest.store.tables import UTCDateTime, metadata, now

send_actions = Table(
    "send_actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition", String(10), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("who", Text, nullable=False),
    # start | pause | resume | resend in doubt | interrupted | resumed after a restart
    Column("action", String(40), nullable=False),
    Column("outcome", Text, nullable=False),  # what the ledger said: done, or refused and why
)


@dataclass(frozen=True)
class SendAction:
    """One thing an operator (or the web app, on its own behalf) asked of a send."""

    edition: str
    at: datetime
    who: str
    action: str
    outcome: str


def record_action(store: Store, edition: str, who: str, action: str, outcome: str) -> None:
    with store.begin() as conn:
        conn.execute(
            send_actions.insert().values(
                edition=edition, at=now(), who=who, action=action, outcome=outcome[:2000]
            )
        )


def actions_of(store: Store, edition: str, limit: int = 50) -> list[SendAction]:
    """The latest of what was asked of an edition's send, oldest first."""
    with store.begin() as conn:
        rows = conn.execute(
            select(send_actions)
            .where(send_actions.c.edition == edition)
            .order_by(send_actions.c.id.desc())
            .limit(limit)
        ).all()
    return [SendAction(r.edition, r.at, r.who, r.action, r.outcome) for r in reversed(rows)]


def latest_actions(store: Store) -> dict[str, SendAction]:
    """Each edition's latest action: what the web app looks at when it starts again."""
    with store.begin() as conn:
        newest = (
            select(func.max(send_actions.c.id)).group_by(send_actions.c.edition).scalar_subquery()
        )
        rows = conn.execute(select(send_actions).where(send_actions.c.id.in_(newest))).all()
    return {r.edition: SendAction(r.edition, r.at, r.who, r.action, r.outcome) for r in rows}
