"""The deliveries table's queries: who of a batch a relay took, recipient by recipient.

Only backends that deliver one message at a time write here (SMTP, the outbox),
through the journal the ledger gives them (digest/send/journal.py says why and
when). Beside send.py (the sends and batches), as functions over a Store: the send stage's
own table, written by the journal and read by the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from digest.store import Store
from digest.store.tables import _insert_for, deliveries, now


@dataclass
class Tally:
    """What the deliveries table holds for one batch."""

    accepted: set[str] = field(default_factory=set)
    trying: list[str] = field(default_factory=list)  # may have had it: in doubt


def tally(store: Store, send_id: int, number: int) -> Tally:
    with store.begin() as conn:
        rows = conn.execute(
            select(deliveries.c.state, deliveries.c.email)
            .where(deliveries.c.send_id == send_id, deliveries.c.number == number)
            .order_by(deliveries.c.email)
        ).all()
    result = Tally()
    for state, email in rows:
        if state == "accepted":
            result.accepted.add(email)
        else:
            result.trying.append(email)
    return result


def record(
    store: Store,
    send_id: int,
    number: int,
    *,
    accepted: Iterable[str] = (),
    not_sent: Iterable[str] = (),
    trying: Iterable[str] = (),
) -> None:
    """Outcomes of recipients tried before, then "trying" for the next: one transaction.

    not_sent: refused, deferred or failed before the message was handed over; the
    row goes, so a later claim tries them again.
    """
    accepted, not_sent, trying = list(accepted), list(not_sent), list(trying)
    if not (accepted or not_sent or trying):
        return
    this_batch = (deliveries.c.send_id == send_id, deliveries.c.number == number)
    stamp = now()
    with store.begin() as conn:
        if accepted:
            conn.execute(
                update(deliveries)
                .where(*this_batch, deliveries.c.email.in_(accepted))
                .values(state="accepted", updated_at=stamp)
            )
        if not_sent:
            conn.execute(delete(deliveries).where(*this_batch, deliveries.c.email.in_(not_sent)))
        if trying:
            insert = _insert_for(conn, deliveries)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["send_id", "number", "email"],
                    set_={"state": "trying", "updated_at": stamp},
                ),
                [
                    {
                        "send_id": send_id,
                        "number": number,
                        "email": email,
                        "state": "trying",
                        "updated_at": stamp,
                    }
                    for email in trying
                ],
            )


def forget_trying(store: Store, send_id: int, number: int) -> None:
    """A new claim of the batch sends to these again: their rows no longer say anything."""
    with store.begin() as conn:
        conn.execute(
            delete(deliveries).where(
                deliveries.c.send_id == send_id,
                deliveries.c.number == number,
                deliveries.c.state == "trying",
            )
        )
