"""Subject tests: mail each subject to a share of a test group, wait, keep the subject
readers clicked most, and mail it to the rest; under the ledger's rules.

The phases of one send, each resumable from the ledger alone:

1. The snapshot (store/subjects.snapshot_test_send) fixes who is in the test and with
   which subject, and who is in the rest, in one transaction: every reader is in
   exactly one batch, so the ledger's exactly-once holds across the test and the rest.
2. The test's batches go out like any send's (pending -> sending -> sent); the rest's
   are `held`, which nobody claims.
3. The wait: its end (decide_at) is recorded when the test is out, once, so a resumed
   send waits out what is left of it, not a new hour. The send is `testing` meanwhile:
   workers leave it alone.
4. The choice, by unique click rate (distinct readers who clicked / readers mailed
   that subject), not opens: Apple Mail Privacy Protection opens mail on its own. A tie
   goes to the earlier subject; no click at all to the first, and the send says so.
   Recorded once, with the rest's batches released carrying the winner, in one
   transaction (store/subjects.decide): a second worker or a resume finds it made.
5. The rest goes out like any send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from digest.errors import DigestError
from digest.send.durable import Durable
from digest.send.reports import SendReport, report
from digest.store import Store, now
from digest.store.subjects import (
    SubjectTest,
    decide,
    start_wait,
    subject_test,
    test_groups,
    test_out,
    unique_clicks,
)

log = logging.getLogger("digest.send.subjects")

#: The send's state while it waits for the test's clicks: no worker claims from it.
TESTING = "testing"


def test_phase(
    store: Store,
    durable: Durable,
    send_id: int,
    test: SubjectTest,
    wait_seconds: float,
    deliver: Callable[[], SendReport],
    stop: threading.Event,
) -> SendReport | None:
    """Mail the test, wait, choose. None once a winner is recorded (the rest may go);
    otherwise how the send stands where it stopped (paused, stopped, or a signal while
    waiting: `digest send EDITION --resume` goes on from there)."""
    name = test.edition
    if not durable("reading the ledger", test_out, store, name, send_id):
        result = deliver()
        if stop.is_set() or result.state in ("paused", "stopped"):
            return result
        if not durable("reading the ledger", test_out, store, name, send_id):
            return result  # another worker holds test batches: left to its run
    decide_at = durable("starting the subject test's wait", start_wait, store, name, wait_seconds)
    groups = durable("reading the ledger", test_groups, store, name, send_id)
    durable(
        "recording the subject test's wait",
        store.sends.set_send_state,
        send_id,
        TESTING,
        f"subject test: {len(test.subjects)} subjects mailed to {sum(groups.values()):,} "
        f"readers; the winner is chosen at {decide_at:%Y-%m-%d %H:%M:%S} UTC, then sent to "
        "the rest",
    )
    while (left := (decide_at - now()).total_seconds()) > 0:
        if stop.wait(min(left, 1.0)):
            return durable("reading the ledger", report, store, send_id)
    winner, decision = choose(store, test, send_id)
    if not durable("recording the winner", decide, store, name, send_id, winner, decision):
        decided = durable("reading the subject test", subject_test, store, name)
        decision = decided.decision if decided else decision
    log.info("edition %s: %s", name, decision)
    durable("starting the send to the rest", store.sends.set_send_state, send_id, "sending", "")
    return None


def choose(store: Store, test: SubjectTest, send_id: int) -> tuple[int, str]:
    """The winner's number and the decision in words, from the clicks recorded now."""
    groups = test_groups(store, test.edition, send_id)
    clicks = unique_clicks(store, test.edition, send_id)
    rates = [
        clicks.get(i, 0) / groups[i] if groups.get(i) else 0.0 for i in range(len(test.subjects))
    ]
    figures = "; ".join(
        f'subject {i + 1} "{subject}": {clicks.get(i, 0):,} of {groups.get(i, 0):,} '
        f"readers clicked ({rates[i]:.1%})"
        for i, subject in enumerate(test.subjects)
    )
    if not any(clicks.values()):
        return 0, (
            "subject test: no click events arrived by the end of the wait, so the first "
            f'subject won: "{test.subjects[0]}" ({figures})'
        )
    best = max(rates)
    winner = rates.index(best)  # the first of those tied
    return winner, (
        f'subject test: subject {winner + 1} won by unique click rate: "{test.subjects[winner]}" '
        f"({figures})"
    )


def describe(store: Store, edition: str, send_id: int) -> list[str]:
    """Lines for `digest sends EDITION`: the subjects, and the decision or when it is due."""
    test = subject_test(store, edition)
    if test is None or test.test_batches is None:
        return []
    if test.winner is not None:
        return [test.decision]
    groups = test_groups(store, edition, send_id)
    clicks = unique_clicks(store, edition, send_id)
    due = (
        f"the winner is chosen at {test.decide_at:%Y-%m-%d %H:%M:%S} UTC"
        if test.decide_at
        else "the test is being mailed"
    )
    so_far = "; ".join(
        f'subject {i + 1} "{s}": {clicks.get(i, 0):,} of {groups.get(i, 0):,} clicked so far'
        for i, s in enumerate(test.subjects)
    )
    return [f"subject test: {due} ({so_far})"]


def settle_note(store: Store, durable: Durable, send_id: int, result: SendReport) -> None:
    """A done send keeps the subject test's decision as its note (digest sends shows it)."""
    test = durable("reading the subject test", subject_test, store, result.edition)
    if test is None or test.winner is None or result.state != "done":
        return
    durable("recording the decision", store.sends.set_send_state, send_id, "done", test.decision)
    result.note = test.decision


class SubjectTestError(DigestError):
    """Subjects an editor gave that cannot be tested: a usage error."""

    exit_code = 2


#: How many subjects a test may have.
FEWEST, MOST = 2, 3


def set_test(store: Store, edition: str, subjects: list[str], share: float) -> SubjectTest | None:
    """Give an edition two or three subjects to test, or none (an empty list: no test).

    Refused once the edition has a send: who got which subject is fixed by then.
    """
    from digest.store.subjects import set_subjects

    cleaned = [" ".join(s.split()) for s in subjects]
    if store.sends.get_send(edition) is not None:
        raise SubjectTestError(
            f"edition {edition} has a send already; its subjects can no longer change"
        )
    if cleaned and not FEWEST <= len(cleaned) <= MOST:
        raise SubjectTestError(
            f"--subject-test: give {FEWEST} or {MOST} subjects (one --subject-test each), "
            f"not {len(cleaned)}"
        )
    if any(not s for s in cleaned) or any(len(s) > 200 for s in cleaned):
        raise SubjectTestError("--subject-test: each subject must have 1 to 200 characters")
    if len(set(cleaned)) != len(cleaned):
        raise SubjectTestError("--subject-test: the subjects must differ")
    set_subjects(store, edition, cleaned, share)
    return subject_test(store, edition)
