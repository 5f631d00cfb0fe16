"""Subscribers and suppressions: who may be sent to, and who left.

The subscribers and suppressions tables: the import writes them, a send reads the
deliverable ones, an unsubscribe or a bounce adds a suppression.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    func,
    select,
)

from digest.models import (
    LEFT_STATUSES,
    Recipient,
    Subscriber,
)
from digest.store.tables import (
    Aggregate,
    ImportRow,
    SubscriberWrite,
    _attributes_json,
    _known_addresses,
    _preference,
    _subscriber,
    _upsert_subscriber_rows,
    now,
    send_batches,
    sends,
    subscribers,
    suppressions,
)


class Subscribers(Aggregate):
    """The queries of subscribers and suppressions: `store.subscribers`."""

    def suppressed(self, emails: Sequence[str]) -> dict[str, str]:
        """The reason each of these (lower-case) addresses is suppressed, if it is."""
        found: dict[str, str] = {}
        with self.begin() as conn:
            for i in range(0, len(emails), 500):
                chunk = list(emails[i : i + 500])
                result = conn.execute(
                    select(suppressions.c.email, suppressions.c.reason).where(
                        suppressions.c.email.in_(chunk)
                    )
                )
                found.update({k: v for k, v in result})
        return found

    def suppress(self, email: str, reason: str, source: str = "") -> bool:
        """Suppress an address for good and mark the subscriber. False if it already was.

        The first reason stands (an address that unsubscribed and later bounces
        stays "unsubscribed"), and the subscriber's status says the same. Safe
        when two suppress one address at once (a one-click POST and a webhook
        event): the insert gives way on conflict instead of failing.
        """
        return bool(self.suppress_all([(email, reason, source)]))

    def suppress_all(self, items: Sequence[tuple[str, str, str]]) -> set[str]:
        """suppress() for many (email, reason, source) in one transaction, as if one
        after the other (an address named twice keeps its first reason). Returns the
        addresses (lower-case) suppressed now, not before.

        A webhook post of a thousand bounces is one transaction, not a thousand.
        """
        rows: dict[str, dict[str, Any]] = {}
        stamp = now()
        for email, reason, source in items:
            rows.setdefault(
                email.lower(),
                {"email": email.lower(), "reason": reason, "source": source, "created_at": stamp},
            )
        if not rows:
            return set()
        emails = list(rows)
        added: set[str] = set()
        # The subscriber's status says why the address is suppressed: its first reason,
        # whoever wrote it (a correlated subquery: the row just written, or the older one).
        standing = "(SELECT reason FROM suppressions WHERE suppressions.email = subscribers.email)"
        with self.begin() as conn:
            # Straight through the driver, one multi-row INSERT ... RETURNING per chunk:
            # SQLAlchemy's per-row parameter processing was most of a webhook post's time.
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            processor = suppressions.c.created_at.type.bind_processor(conn.dialect)
            created = processor(stamp) if processor else stamp
            for i in range(0, len(emails), 500):
                chunk = emails[i : i + 500]
                values = ", ".join([f"({mark}, {mark}, {mark}, {mark})"] * len(chunk))
                parameters = []
                for email in chunk:
                    row = rows[email]
                    parameters += [email, row["reason"], row["source"], created]
                added.update(
                    conn.exec_driver_sql(
                        "INSERT INTO suppressions (email, reason, source, created_at) "
                        f"VALUES {values} ON CONFLICT (email) DO NOTHING RETURNING email",
                        tuple(parameters),
                    ).scalars()
                )
                # Through the driver too: building and caching the Core UPDATE cost four
                # times what SQLite took to run it, for every group of one-click requests.
                conn.exec_driver_sql(
                    f"UPDATE subscribers SET status = {standing}, updated_at = {mark} "
                    f"WHERE email IN ({', '.join([mark] * len(chunk))}) "
                    f"AND status != {standing}",
                    (created, *chunk),
                )
        return added

    def upsert_subscribers(self, items: Sequence[Subscriber]) -> tuple[int, int, int]:
        """Add or update subscribers, never reactivating one who left.

        Returns (added, updated, kept_out): kept_out counts rows that asked to be
        active for an address that unsubscribed, bounced or complained.
        """
        unique: dict[str, Subscriber] = {}
        for s in items:  # a later row for the same address wins, as an update would
            email = s.email.lower()
            unique[email] = s if s.email == email else replace(s, email=email)
        result = self.import_subscribers(list(unique.values()))
        return result.added, result.updated, result.kept_out

    def import_subscribers(
        self, items: Sequence[Subscriber], stamp: datetime | None = None
    ) -> SubscriberWrite:
        """upsert_subscribers for one chunk of a longer import: import_rows, from
        Subscribers. Addresses must be lower-case and unique within `items`."""
        return self.import_rows(
            [
                (
                    s.email,
                    s.name,
                    ";".join(s.sections),
                    s.status,
                    _attributes_json(s.attributes) if s.attributes else "{}",
                )
                for s in items
            ],
            stamp,
        )

    def import_rows(
        self, rows: Sequence[ImportRow], stamp: datetime | None = None
    ) -> SubscriberWrite:
        """Write one chunk of an import: (email, name, sections, status, attributes JSON)
        rows, never reactivating an address that left.

        Every chunk of one import is written with the same `stamp` (updated_at).
        A row whose address already carries that stamp repeats an earlier row of
        the same import: it is skipped (the first row wins) and listed in
        `repeated`. So an import finds repeats across a million rows without
        holding a million addresses in memory. Addresses must be lower-case and
        unique within `rows`.

        Set-based: one query finds what the store knows of the chunk's addresses (the
        subscriber's status, whether this import wrote it, the suppression), the
        chunk's addresses passed as one array parameter; then the driver writes the rows.
        """
        result = SubscriberWrite()
        if not rows:
            return result
        stamp = stamp or now()
        with self.begin() as conn:
            processor = subscribers.c.updated_at.type.bind_processor(conn.dialect)
            stamp_value = processor(stamp) if processor else stamp
            if conn.dialect.name == "sqlite" and isinstance(stamp_value, datetime):
                # What sqlite3's default adapter would write for each row, written once.
                stamp_value = stamp_value.isoformat(" ")
            known = _known_addresses(conn, [row[0] for row in rows], stamp_value)
            written: list[tuple[Any, ...]] = []
            new_suppressions: list[tuple[Any, ...]] = []
            for email, name, sections, status, attributes in rows:
                found = known.get(email)
                if found is None:
                    result.added += 1
                    if status in LEFT_STATUSES:
                        new_suppressions.append((email, status, "import", stamp_value))
                    written.append((email, name, sections, status, attributes, stamp_value))
                    continue
                standing, repeated, reason = found
                if repeated:
                    result.repeated.append(email)
                    continue
                left = reason or (standing if standing in LEFT_STATUSES else None)
                if left and status not in LEFT_STATUSES:
                    result.kept_out += 1
                    status = left
                if status in LEFT_STATUSES and reason is None:
                    new_suppressions.append((email, status, "import", stamp_value))
                if standing is None:
                    result.added += 1
                else:
                    result.updated += 1
                written.append((email, name, sections, status, attributes, stamp_value))
            _upsert_subscriber_rows(conn, written)
            if new_suppressions:
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                conn.exec_driver_sql(
                    "INSERT INTO suppressions (email, reason, source, created_at) "
                    f"VALUES ({mark}, {mark}, {mark}, {mark})",
                    new_suppressions,
                )
        return result

    def subscriber(self, email: str) -> Subscriber | None:
        with self.begin() as conn:
            row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
        return _subscriber(row) if row is not None else None

    def suppression(self, email: str) -> Any | None:
        """(reason, source, created_at) of a suppressed address, else None."""
        with self.begin() as conn:
            return conn.execute(
                select(
                    suppressions.c.reason, suppressions.c.source, suppressions.c.created_at
                ).where(suppressions.c.email == email)
            ).first()

    def deliveries_to(self, email: str) -> list[Any]:
        """Every send batch that holds this (lower-case) address, newest edition first:
        (edition, number, state, updated_at, message_id, error).

        A scan of the snapshots, for an operator's question about one reader; the
        JSON is parsed to be sure it is the address and not a longer one containing it.
        """
        needle = json.dumps(email)
        query = (
            select(
                sends.c.edition,
                send_batches.c.number,
                send_batches.c.state,
                send_batches.c.updated_at,
                send_batches.c.message_id,
                send_batches.c.error,
                send_batches.c.recipients,
            )
            .join(sends, sends.c.id == send_batches.c.send_id)
            .where(send_batches.c.recipients.contains(needle, autoescape=True))
            .order_by(sends.c.edition.desc(), send_batches.c.number)
        )
        with self.begin() as conn:
            rows = conn.execute(query).all()
        return [row[:6] for row in rows if any(e == email for e, _ in json.loads(row.recipients))]

    def iter_subscribers(
        self, status: str | None = None, chunk: int = 5000
    ) -> Iterator[Subscriber]:
        """Every subscriber in email order, streamed in chunks (never the whole list in memory)."""
        last = ""
        while True:
            query = select(subscribers).where(subscribers.c.email > last)
            if status is not None:
                query = query.where(subscribers.c.status == status)
            with self.begin() as conn:
                rows = conn.execute(query.order_by(subscribers.c.email).limit(chunk)).all()
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last = rows[-1].email

    def deliverable(self, chunk: int = 5000) -> Iterator[Subscriber]:
        """Active subscribers with no suppression, in email order, streamed."""
        yield from self._deliverable(select(subscribers), chunk, _subscriber)

    def deliverable_recipients(
        self, chunk: int = 2000, sections: str | None = None
    ) -> Iterator[Recipient]:
        """Who a send goes to: deliverable() with only address and name, for speed.

        A send snapshots every recipient; reading just the two columns a letter
        needs (no attributes to decode) more than halves the cost per row.
        sections: only readers with this preference (lower-case, as
        deliverable_sections gives it).
        """
        query = select(subscribers.c.email, subscribers.c.name)
        if sections is not None:
            query = query.where(_preference == sections)
        yield from self._deliverable(query, chunk, Recipient._make)

    def deliverable_sections(self) -> dict[str, int]:
        """Each section preference among deliverable subscribers (lower-case), and how many."""
        with self.begin() as conn:
            rows = conn.execute(
                select(_preference, func.count())
                .outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
                .where(subscribers.c.status == "active", suppressions.c.email.is_(None))
                .group_by(_preference)
            )
            return {str(key): int(n) for key, n in rows}

    def _deliverable(self, query: Any, chunk: int, make: Any) -> Iterator[Any]:
        last = ""
        query = (
            query.outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
            # coalesce() keeps SQLite off the status index: with it, SQLite gathered
            # every active row and sorted them by email for each chunk (quadratic in
            # the list's size); walking the email index needs no sort. PostgreSQL
            # takes the email index either way.
            .where(
                func.coalesce(subscribers.c.status, "") == "active",
                suppressions.c.email.is_(None),
            )
            .order_by(subscribers.c.email)
            .limit(chunk)
        )
        while True:
            with self.begin() as conn:
                rows = conn.execute(query.where(subscribers.c.email > last)).all()
            if not rows:
                return
            for row in rows:
                yield make(row)
            last = rows[-1].email

    def count_subscribers(self) -> dict[str, int]:
        with self.begin() as conn:
            result = conn.execute(
                select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
            )
            return {status: int(n) for status, n in result}
