"""How a send stands, from the ledger: the counts, the batches in doubt and what will
become of them, and the note an unfinished send carries.

Read by `digest send` and `digest sends`, the scheduler and the web's sends pages;
written back (settle) when a send has nothing more to claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from digest.send.doubt import resolve, waits_for_events
from digest.store import Store
from digest.store.events import settled_by_events

#: States in which any worker may claim a send's pending batches.
ACTIVE_STATES = ("sending", "incomplete")


@dataclass
class SendReport:
    edition: str
    send_id: int
    backend: str
    recipients: int = 0
    batches: int = 0
    sent_now: int = 0
    sent: int = 0
    pending: int = 0
    in_doubt: int = 0
    in_doubt_batches: list[int] = field(default_factory=list)
    #: Of those: SendGrid's events came (a resume records them sent), none came yet
    #: (within [delivery] event_wait_seconds), and when that wait ends (ISO, UTC).
    proven_by_events: list[int] = field(default_factory=list)
    awaiting_events: list[int] = field(default_factory=list)
    events_due: str = ""
    #: Batches SendGrid's events settled as sent, ever; and in this run.
    settled_by_events: list[int] = field(default_factory=list)
    settled_now: list[int] = field(default_factory=list)
    failed: int = 0
    state: str = ""
    note: str = ""
    created: bool = False


def report(
    store: Store,
    send_id: int,
    *,
    sent_now: int = 0,
    created: bool = False,
    event_wait: float | None = None,
) -> SendReport:
    """How a send stands now, from the ledger. sent_now and created describe this run.

    event_wait: [delivery] event_wait_seconds, to tell in-doubt batches still waiting
    for SendGrid's events from those left to the operator; None for "no wait".
    """
    row = store.sends.send_by_id(send_id)
    states = store.sends.batch_states(send_id)
    doubt = [b.number for b in store.sends.failed_batches(send_id) if b.state == "sending"]
    looked = resolve(store, send_id, event_wait=event_wait, settle=False)
    return SendReport(
        edition=row.edition,
        send_id=send_id,
        backend=row.backend,
        recipients=row.recipients,
        batches=row.batches,
        sent=states.get("sent", (0, 0))[1],
        # With the rest of a subject test, held until its winner is known (send/subjects.py).
        pending=states.get("pending", (0, 0))[1] + states.get("held", (0, 0))[1],
        in_doubt=states.get("sending", (0, 0))[1],
        in_doubt_batches=doubt,
        proven_by_events=looked.proven,
        awaiting_events=looked.waiting,
        events_due=looked.due.isoformat(timespec="seconds") if looked.due else "",
        settled_by_events=[number for number, _size in settled_by_events(store, send_id)],
        failed=states.get("failed", (0, 0))[1],
        state=row.state,
        note=row.note,
        sent_now=sent_now,
        created=created,
    )


def settle(
    store: Store,
    send_id: int,
    *,
    sent_now: int = 0,
    created: bool = False,
    event_wait: float | None = None,
) -> SendReport:
    """Record how a send stands once nothing more can be claimed: done, or what is left."""
    result = report(store, send_id, sent_now=sent_now, created=created, event_wait=event_wait)
    if result.pending == 0 and result.in_doubt == 0 and result.failed == 0:
        if result.state != "done":
            store.sends.set_send_state(send_id, "done")
        result.state, result.note = "done", ""
    elif result.state in ACTIVE_STATES:
        note = incomplete_note(result)
        store.sends.set_send_state(send_id, "incomplete", note)
        result.state, result.note = "incomplete", note
    return result


def incomplete_note(result: SendReport) -> str:
    parts = []
    if result.pending:
        parts.append(f"{result.pending} recipients not yet sent")
    if result.in_doubt:
        parts.append(f"{result.in_doubt} recipients in doubt: " + doubt_note(result))
    if result.failed:
        parts.append(f"{result.failed} recipients in failed batches; see `digest sends`")
    return "; ".join(parts)


def doubt_note(result: SendReport) -> str:
    """What became, or will become, of each batch in doubt (send/doubt.py), in words."""
    resume = f"`digest send {result.edition} --resume`"
    proven, waiting = result.proven_by_events, result.awaiting_events
    left = [n for n in result.in_doubt_batches if n not in proven and n not in waiting]
    parts = []
    if proven:
        parts.append(
            f"SendGrid's events show it took batches {_ranges(proven)}; {resume} records them sent"
        )
    if waiting:
        due = f"{datetime.fromisoformat(result.events_due):%Y-%m-%d %H:%M:%S}"
        parts.append(
            f"batches {_ranges(waiting)} have no SendGrid event yet; {resume} again after "
            f"{due} UTC settles them from SendGrid's events ([delivery] event_wait_seconds)"
        )
    if left and waits_for_events(result.backend):
        parts.append(
            f"batches {_ranges(left)} had no SendGrid event within [delivery] "
            "event_wait_seconds, so SendGrid most likely never took them: they stay in doubt "
            "for you to decide; resend them with --retry-in-doubt"
        )
    elif left:
        parts.append(f"batches {_ranges(left)}; resend them with --retry-in-doubt")
    return "; ".join(parts)


def _ranges(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")


def in_doubt_line(result: SendReport, batch: Any, event_wait: float, detail: str = "") -> str:
    """One in-doubt batch (a store.sends.failed_batches row) for `digest sends`: since when,
    and what will settle it. detail: what recording recipient by recipient says of it
    (journal.in_doubt_detail)."""
    why = (f" ({batch.error})" if batch.error else "") + detail
    head = (
        f"batch {batch.number} ({batch.size} recipients) in doubt since "
        f"{batch.updated_at:%Y-%m-%d %H:%M:%S} UTC{why}: "
    )
    resume = f"`digest send {result.edition} --resume`"
    if batch.number in result.proven_by_events:
        return head + f"SendGrid's events show it took it; {resume} records it as sent"
    if batch.number in result.awaiting_events:
        due = batch.updated_at + timedelta(seconds=event_wait)
        return head + (
            f"no SendGrid event yet; {resume} after {due:%H:%M:%S} UTC settles it from "
            "SendGrid's events ([delivery] event_wait_seconds), if any come "
            "(if a worker is still sending it, it will finish)"
        )
    if waits_for_events(result.backend):
        return head + (
            f"no SendGrid event within [delivery] event_wait_seconds ({event_wait:g} s), so "
            "SendGrid most likely never took it; it stays in doubt for you to decide: "
            f"`digest send {result.edition} --resume --retry-in-doubt` resends it"
        )
    return head + (
        "it may or may not have gone out (if a worker is still sending it, it will finish); "
        f"`digest send {result.edition} --resume --retry-in-doubt` resends it"
    )
