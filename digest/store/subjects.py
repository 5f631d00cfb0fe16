"""Subject tests: the subjects an editor gave an edition, and the one decision a send makes.

The subject_tests table holds, per edition, two or three subjects, when the test's
wait ends and which subject won. A send with a subject test snapshots its list at once
(snapshot_test_send): a test group cut by a hash of (edition, address) into equal
shares, one per subject, in `pending` batches that carry their subject's number
(send_batches.variant); the rest in `held` batches that nobody can claim. decide()
records the winner and releases the held batches carrying the winner's number, in one
transaction and only if no winner is recorded yet: two workers cannot pick
differently, and a crash leaves either both done or neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Float, Integer, String, Table, Text, func, select, update

from digest.store import Store
from digest.store.tables import (
    UTCDateTime,
    _preference,
    metadata,
    now,
    send_batches,
    subscribers,
    suppressions,
)

#: One row per edition with a subject test.
subject_tests = Table(
    "subject_tests",
    metadata,
    Column("edition", String(10), primary_key=True),
    Column("subjects", Text, nullable=False),  # JSON ["first", "second", ...]
    Column("share", Float, nullable=False),  # of the list, set when the send snapshots it
    Column("decide_at", UTCDateTime),  # when the wait ends: set once, when the test is out
    Column("winner", Integer),  # index into subjects, recorded once
    # The test's batches are numbered 1 to this (the rest's come after): set by the snapshot.
    Column("test_batches", Integer),
    Column("decision", Text, nullable=False, default=""),  # the decision, in words
    Column("created_at", UTCDateTime, nullable=False),
)

#: send_batches.state of a batch of the rest, before the winner is known.
HELD = "held"


@dataclass(frozen=True)
class SubjectTest:
    edition: str
    subjects: tuple[str, ...]
    share: float
    decide_at: datetime | None
    winner: int | None
    decision: str
    test_batches: int | None


def _row(row: Any) -> SubjectTest:
    return SubjectTest(
        edition=row.edition,
        subjects=tuple(json.loads(row.subjects)),
        share=float(row.share),
        decide_at=row.decide_at,
        winner=row.winner,
        decision=row.decision or "",
        test_batches=row.test_batches,
    )


def subject_test(store: Store, edition: str) -> SubjectTest | None:
    with store.begin() as conn:
        row = conn.execute(select(subject_tests).where(subject_tests.c.edition == edition)).first()
    return None if row is None else _row(row)


def set_subjects(store: Store, edition: str, subjects: Sequence[str], share: float) -> None:
    """Give the edition these subjects to test (none: no test). The caller has checked
    that no send has started."""
    with store.begin() as conn:
        conn.execute(subject_tests.delete().where(subject_tests.c.edition == edition))
        if subjects:
            conn.execute(
                subject_tests.insert().values(
                    edition=edition,
                    subjects=json.dumps(list(subjects)),
                    share=share,
                    decision="",
                    created_at=now(),
                )
            )


def test_position(edition: str, email: str) -> bytes:
    """A reader's place in the draw for the test group: random-looking, and the same
    every time for the same edition and address."""
    return hashlib.blake2b(f"{edition}\0{email}".encode(), digest_size=8).digest()


def snapshot_test_send(
    store: Store, edition: str, backend: str, batch_size: int, test: SubjectTest
) -> int:
    """The send of an edition with a subject test, snapshotted in one transaction.

    The deliverable readers are drawn in test_position order; the first `share` of
    them (at least one per subject) are dealt in turn to each subject, the others are
    the rest. Batches hold readers of one section preference and one subject: the test
    batches first (pending), then the rest's (held).
    """
    count = len(test.subjects)
    with store.begin() as conn:
        send_id = store.sends._new_send(conn, edition, backend)
        readers = conn.execute(
            select(subscribers.c.email, subscribers.c.name, _preference)
            .outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
            .where(subscribers.c.status == "active", suppressions.c.email.is_(None))
        ).all()
        drawn = sorted(readers, key=lambda r: test_position(edition, r[0]))
        size = min(len(drawn), max(count, round(len(drawn) * test.share)))
        groups: dict[tuple[int, str], list[tuple[str, str]]] = {}
        for position, (email, name, sections) in enumerate(drawn):
            variant = position % count if position < size else count  # count = the rest
            groups.setdefault((variant, sections), []).append((email, name))
        rows: list[dict[str, Any]] = []
        for (variant, sections), members in sorted(groups.items()):
            members.sort()
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                rest = variant == count
                rows.append(
                    {
                        "send_id": send_id,
                        "number": len(rows) + 1,
                        "sections": sections,
                        "state": HELD if rest else "pending",
                        "variant": None if rest else variant,
                        "size": len(chunk),
                        "recipients": json.dumps(chunk, separators=(",", ":")),
                        "attempts": 0,
                        "updated_at": now(),
                    }
                )
        tests = sum(1 for row in rows if row["state"] != HELD)
        conn.execute(
            update(subject_tests)
            .where(subject_tests.c.edition == edition)
            .values(test_batches=tests, share=test.share)
        )
        for start in range(0, len(rows), 10):
            conn.execute(send_batches.insert(), rows[start : start + 10])
        store.sends._count_send(conn, send_id)
    return send_id


def _test_batches(edition: str) -> Any:
    return (
        select(func.coalesce(subject_tests.c.test_batches, 0))
        .where(subject_tests.c.edition == edition)
        .scalar_subquery()
    )


def test_out(store: Store, edition: str, send_id: int) -> bool:
    """True when no test batch is left to claim (each is sent, failed or in doubt)."""
    with store.begin() as conn:
        left = conn.scalar(
            select(func.count()).where(
                send_batches.c.send_id == send_id,
                send_batches.c.state == "pending",
                send_batches.c.number <= _test_batches(edition),
            )
        )
    return not left


def start_wait(store: Store, edition: str, seconds: float) -> datetime:
    """When the test's wait ends: set the first time it is asked, the same after."""
    with store.begin() as conn:
        conn.execute(
            update(subject_tests)
            .where(subject_tests.c.edition == edition, subject_tests.c.decide_at.is_(None))
            .values(decide_at=now() + timedelta(seconds=seconds))
        )
        return conn.scalar(
            select(subject_tests.c.decide_at).where(subject_tests.c.edition == edition)
        )


def test_groups(store: Store, edition: str, send_id: int) -> dict[int, int]:
    """Each subject's number -> the readers its test batches hold."""
    with store.begin() as conn:
        rows = conn.execute(
            select(send_batches.c.variant, func.sum(send_batches.c.size))
            .where(
                send_batches.c.send_id == send_id,
                send_batches.c.number <= _test_batches(edition),
            )
            .group_by(send_batches.c.variant)
        )
        return {int(variant): int(total or 0) for variant, total in rows}


def unique_clicks(store: Store, edition: str, send_id: int) -> dict[int, int]:
    """Each subject's number -> distinct readers who clicked in its test batches.

    The only read of the events table for subject tests: SendGrid's `click` events
    (custom_args edition and batch), joined to the batches' subject numbers.
    """
    from digest.store.events import sendgrid_events

    with store.begin() as conn:
        rows = conn.execute(
            select(send_batches.c.variant, func.count(sendgrid_events.c.email.distinct()))
            .join(
                sendgrid_events,
                (sendgrid_events.c.batch == send_batches.c.number)
                & (sendgrid_events.c.edition == edition),
            )
            .where(
                send_batches.c.send_id == send_id,
                send_batches.c.number <= _test_batches(edition),
                sendgrid_events.c.event == "click",
            )
            .group_by(send_batches.c.variant)
        )
        return {int(variant): int(n) for variant, n in rows}


def decide(store: Store, edition: str, send_id: int, winner: int, decision: str) -> bool:
    """Record the winner and release the rest's batches with its subject, at most once.

    False if a winner was recorded already (by another worker, or before a crash):
    then nothing changes and that decision stands.
    """
    with store.begin() as conn:
        recorded = conn.execute(
            update(subject_tests)
            .where(subject_tests.c.edition == edition, subject_tests.c.winner.is_(None))
            .values(winner=winner, decision=decision)
        ).rowcount
        if recorded != 1:
            return False
        conn.execute(
            update(send_batches)
            .where(send_batches.c.send_id == send_id, send_batches.c.state == HELD)
            .values(state="pending", variant=winner, updated_at=now())
        )
    return True
