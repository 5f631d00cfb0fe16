"""Sends and their batches: the ledger a send resumes from.

The sends and send_batches tables: a snapshot of the deliverable list cut into
numbered batches, each claimed, finished or failed (pending -> sending -> sent | failed).
The per-recipient records are in delivery.py, SendGrid's events in events.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Text,
    cast,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection

from digest.models import (
    Batch,
    Recipient,
)
from digest.store.tables import (
    Aggregate,
    UTCDateTime,
    _preference,
    claimed_batch,
    now,
    send_batches,
    sends,
    subscribers,
    suppressions,
)


class Sends(Aggregate):
    """The queries of sends and the batch ledger: `store.sends`."""

    def get_send(self, edition: str) -> Any | None:
        with self.begin() as conn:
            return conn.execute(select(sends).where(sends.c.edition == edition)).first()

    def snapshot_send(self, edition: str, backend: str, batch_size: int) -> int:
        """create_send for every deliverable subscriber, done by the database.

        One INSERT ... SELECT groups the deliverable subscribers by section
        preference, numbers them by address within each, cuts them into batches
        of one preference each and writes each batch's [[email, name], ...] as
        JSON, so a million recipients never pass through Python (on SQLite 3 µs a
        recipient instead of 4.5, and no memory that grows with the list). The
        same rule as create_send: all of it or nothing.
        """
        postgres = self.dialect == "postgresql"
        with self.begin() as conn:
            send_id = self._new_send(conn, edition, backend)
            ranked = (
                select(
                    subscribers.c.email,
                    subscribers.c.name,
                    _preference.label("sections"),
                    func.row_number()
                    .over(partition_by=_preference, order_by=subscribers.c.email)
                    .label("position"),
                )
                .outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
                .where(subscribers.c.status == "active", suppressions.c.email.is_(None))
                .subquery()
            )
            # Within a preference, positions 1..1000 are its first batch, 1001..2000
            # its second, ...: grouped by (preference, chunk), then the batches (a
            # thousandth as many rows) numbered 1, 2, ... across preferences. (A second
            # window function over the whole list cost 40% more at a million.)
            chunk = ((ranked.c.position - 1) // batch_size).label("chunk")
            if postgres:
                from sqlalchemy.dialects.postgresql import aggregate_order_by

                members: Any = cast(
                    func.json_agg(
                        aggregate_order_by(
                            func.json_build_array(ranked.c.email, ranked.c.name),
                            ranked.c.email,
                        )
                    ),
                    Text,
                )
            else:
                members = func.json_group_array(func.json_array(ranked.c.email, ranked.c.name))
            grouped = (
                select(
                    ranked.c.sections,
                    chunk,
                    func.count().label("size"),
                    members.label("members"),
                )
                .group_by(ranked.c.sections, chunk)
                .subquery()
            )
            conn.execute(
                send_batches.insert().from_select(
                    [
                        "send_id",
                        "number",
                        "sections",
                        "state",
                        "size",
                        "recipients",
                        "attempts",
                        "updated_at",
                    ],
                    select(
                        literal(send_id),
                        func.row_number().over(order_by=(grouped.c.sections, grouped.c.chunk)),
                        grouped.c.sections,
                        literal("pending"),
                        grouped.c.size,
                        grouped.c.members,
                        literal(0),
                        literal(now(), UTCDateTime),
                    ),
                )
            )
            self._count_send(conn, send_id)
        return send_id

    def _new_send(self, conn: Connection, edition: str, backend: str) -> int:
        return int(
            conn.execute(
                sends.insert().values(
                    edition=edition,
                    backend=backend,
                    state="sending",
                    recipients=0,
                    batches=0,
                    note="",
                    created_at=now(),
                    updated_at=now(),
                )
            ).inserted_primary_key[0]
        )

    def _count_send(self, conn: Connection, send_id: int) -> None:
        batches, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(send_batches.c.size), 0)).where(
                send_batches.c.send_id == send_id
            )
        ).one()
        conn.execute(
            update(sends).where(sends.c.id == send_id).values(recipients=total, batches=batches)
        )

    def create_send(self, edition: str, backend: str, batches: Iterable[list[Recipient]]) -> int:
        """Snapshot the recipients into numbered pending batches, in one transaction.

        If the process dies half-way nothing is recorded and the next attempt
        starts clean; once this returns, the snapshot is fixed.
        """
        with self.begin() as conn:
            send_id = self._new_send(conn, edition, backend)
            pending: list[dict[str, Any]] = []
            for number, recipients in enumerate(batches, start=1):
                pending.append(
                    {
                        "send_id": send_id,
                        "number": number,
                        "state": "pending",
                        "size": len(recipients),
                        # [[email, name], ...]: a Recipient is that tuple already.
                        "recipients": json.dumps(recipients, separators=(",", ":")),
                        "attempts": 0,
                        "updated_at": now(),
                    }
                )
                if len(pending) >= 10:  # ~0.5 MB of snapshot held at a time
                    conn.execute(send_batches.insert(), pending)
                    pending = []
            if pending:
                conn.execute(send_batches.insert(), pending)
            self._count_send(conn, send_id)
        return send_id

    def batch_states(self, send_id: int) -> dict[str, tuple[int, int]]:
        """state -> (batches, recipients)."""
        with self.begin() as conn:
            result = conn.execute(
                select(send_batches.c.state, func.count(), func.sum(send_batches.c.size))
                .where(send_batches.c.send_id == send_id)
                .group_by(send_batches.c.state)
            )
            return {state: (int(n), int(size or 0)) for state, n, size in result}

    def claim_batch(
        self,
        send_id: int,
        states: Sequence[str] = ("pending",),
        *,
        token: str | None = None,
        while_send: Sequence[str] | None = None,
    ) -> Batch | None:
        """Move the lowest-numbered batch in one of `states` to `sending` and return it.

        The state change is committed before the caller talks to the mail API,
        so a crash afterwards leaves the batch visibly "in doubt". On PostgreSQL
        many workers claim concurrently with FOR UPDATE SKIP LOCKED. `token` is
        written with the claim (events.claimed_with finds it again). With
        `while_send`, nothing is claimed unless the send is in one of those states
        (paused or stopped by someone else: None), checked in the same statement.

        One statement, one round trip: on a busy database server each costs
        milliseconds, and a batch makes a few.
        """
        pending = send_batches.c.state.in_(list(states))
        conditions = [send_batches.c.send_id == send_id, pending]
        if while_send is not None:
            conditions.append(
                exists().where(sends.c.id == send_id, sends.c.state.in_(list(while_send)))
            )
        with self.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Lock the row we take and skip rows other workers hold, so workers
                # never wait for each other nor take the same batch.
                number: Any = (
                    select(send_batches.c.number)
                    .where(*conditions)
                    .order_by(send_batches.c.number)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                    .scalar_subquery()
                )
            else:
                # SQLite has one writer at a time: choosing and taking the batch in
                # one UPDATE makes the claim atomic. (A SELECT, then an UPDATE that
                # finds the batch gone, would leave this connection holding the
                # write lock while it tried again.)
                number = (
                    select(func.min(send_batches.c.number)).where(*conditions).scalar_subquery()
                )
            row = conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.number == number, pending)
                .values(
                    state="sending",
                    attempts=send_batches.c.attempts + 1,
                    updated_at=now(),
                    claim=token,
                )
                .returning(
                    send_batches.c.number,
                    send_batches.c.recipients,
                    send_batches.c.attempts,
                    send_batches.c.sections,
                    send_batches.c.variant,
                )
            ).first()
        return None if row is None else claimed_batch(send_id, row)

    def send_sections(self, send_id: int) -> list[str]:
        """The section preferences a send's batches were cut by ("" = none)."""
        with self.begin() as conn:
            return sorted(
                conn.scalars(
                    select(send_batches.c.sections)
                    .where(send_batches.c.send_id == send_id)
                    .distinct()
                )
            )

    def claimed_since(self, send_id: int, since: datetime) -> list[int]:
        """Batches still `sending` that were claimed at or after `since`: in flight
        with some worker, if it is alive."""
        with self.begin() as conn:
            return list(
                conn.scalars(
                    select(send_batches.c.number).where(
                        send_batches.c.send_id == send_id,
                        send_batches.c.state == "sending",
                        send_batches.c.updated_at >= since,
                    )
                )
            )

    def requeue_batches(self, send_id: int, states: Sequence[str]) -> int:
        """Put batches in these states back to pending. Returns how many recipients."""
        with self.begin() as conn:
            size = conn.scalar(
                select(func.sum(send_batches.c.size)).where(
                    send_batches.c.send_id == send_id, send_batches.c.state.in_(list(states))
                )
            )
            conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.state.in_(list(states)))
                .values(state="pending", updated_at=now())
            )
        return int(size or 0)

    def finish_batch(
        self,
        send_id: int,
        number: int,
        state: str,
        *,
        response_code: int | None = None,
        message_id: str | None = None,
        error: str | None = None,
        attempts: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "response_code": response_code,
            "message_id": message_id,
            "error": error,
            "updated_at": now(),
        }
        if attempts is not None:  # API calls made, retries included (the claim counts one)
            values["attempts"] = attempts
        with self.begin() as conn:
            conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.number == number)
                .values(**values)
            )

    def set_send_state(self, send_id: int, state: str, note: str = "") -> None:
        with self.begin() as conn:
            conn.execute(
                update(sends)
                .where(sends.c.id == send_id)
                .values(state=state, note=note, updated_at=now())
            )

    def change_send_state(
        self, send_id: int, from_states: Sequence[str], state: str, note: str = ""
    ) -> bool:
        """Move a send to `state` only if it is in one of `from_states`, in one statement:
        of two operators pausing at once, one does it and the other is told it was done."""
        with self.begin() as conn:
            changed = conn.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.state.in_(list(from_states)))
                .values(state=state, note=note, updated_at=now())
            ).rowcount
        return changed == 1

    def start_send_if_unchanged(self, send_id: int, seen: datetime) -> bool:
        """The send to `sending` if nobody changed it since `seen` (its updated_at then)."""
        with self.begin() as conn:
            changed = conn.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.updated_at == seen)
                .values(state="sending", note="", updated_at=now())
            ).rowcount
        return changed == 1

    def failed_batches(self, send_id: int) -> list[Any]:
        with self.begin() as conn:
            return conn.execute(
                select(
                    send_batches.c.number,
                    send_batches.c.size,
                    send_batches.c.state,
                    send_batches.c.attempts,
                    send_batches.c.response_code,
                    send_batches.c.error,
                    send_batches.c.updated_at,
                )
                .where(
                    send_batches.c.send_id == send_id,
                    send_batches.c.state.in_(["failed", "sending"]),
                )
                .order_by(send_batches.c.number)
            ).all()

    def refusals(self, send_id: int) -> list[Any]:
        """Sent batches of which the server refused some recipients: (number, error)."""
        with self.begin() as conn:
            return conn.execute(
                select(send_batches.c.number, send_batches.c.error)
                .where(
                    send_batches.c.send_id == send_id,
                    send_batches.c.state == "sent",
                    send_batches.c.error.is_not(None),
                )
                .order_by(send_batches.c.number)
            ).all()

    def send_by_id(self, send_id: int) -> Any:
        with self.begin() as conn:
            return conn.execute(select(sends).where(sends.c.id == send_id)).one()

    def list_sends(self) -> list[Any]:
        with self.begin() as conn:
            return conn.execute(select(sends).order_by(sends.c.edition.desc())).all()
