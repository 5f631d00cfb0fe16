"""In doubt, then settled: SendGrid's own events say whether it took a batch a crash left in doubt.

A batch is in doubt when the sending process died (a crash, a kill, a database that
never came back) after recording `sending` and before recording the answer: the
request may never have left, or SendGrid may have taken it a moment before.

Every Mail Send request carries custom_args `edition` and `batch` in each
personalization, and SendGrid puts a message's custom args into every event about it
(as top-level keys: "Unique Arguments" and "Event Webhook Reference" in SendGrid's
docs). SendGrid accepts or refuses a request whole, all personalizations or none
(202, or an error for the request: Mail Send API reference), and it emits events
only for what it accepted. So one `processed`, `dropped`, `deferred`, `delivered` or
`bounce` for any recipient of a batch proves SendGrid took that batch's request: the
batch is sent, and resending it would mail all of them twice.

No event yet proves nothing: SendGrid posts events in batches, usually within
seconds to minutes, and retries a POST that failed for up to 24 hours ("Event
Webhook" troubleshooting). So a batch without an event waits `[delivery]
event_wait_seconds` (15 minutes by default) from the moment it went in doubt;
after that it most likely never reached SendGrid, and it is left to the operator
(`--retry-in-doubt` resends it). SMTP and the outbox have no such events: their
batches in doubt are the operator's at once, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.send.durable import Durable
from digest.store import Store, now
from digest.store.events import event_counts, settle_as_sent

log = logging.getLogger("digest.send")


def waits_for_events(backend: str) -> bool:
    """Only SendGrid reports back on what it took; SMTP and the outbox cannot."""
    return backend == "sendgrid"


@dataclass
class Doubt:
    """A send's batches in doubt, each in one of four places."""

    settled: list[int] = field(default_factory=list)  # sent: events settled them just now
    proven: list[int] = field(default_factory=list)  # events came; a resume records them sent
    waiting: list[int] = field(default_factory=list)  # no event yet; within the wait
    left: list[int] = field(default_factory=list)  # no event after the wait: the operator's
    due: datetime | None = None  # when the last of `waiting` has waited enough


def resolve(
    store: Store,
    send_id: int,
    *,
    event_wait: float | None,
    settle: bool = True,
    at: datetime | None = None,
) -> Doubt:
    """Sort a send's in-doubt batches by what SendGrid's events say, settling those they prove.

    event_wait None: no wait at all (a backend without events, or a caller that does
    not know the setting): every batch without an event is the operator's.
    settle False: only look (`digest sends`); proven batches stay in doubt.
    """
    row = store.sends.send_by_id(send_id)
    doubtful = [b for b in store.sends.failed_batches(send_id) if b.state == "sending"]
    result = Doubt()
    if not doubtful:
        return result
    events = event_counts(store, row.edition, [b.number for b in doubtful])
    current = at or now()
    wait = timedelta(seconds=event_wait or 0) if waits_for_events(row.backend) else timedelta(0)
    for batch in doubtful:
        if events.get(batch.number):
            if not settle:
                result.proven.append(batch.number)
            elif settle_as_sent(store, send_id, batch.number):
                result.settled.append(batch.number)
            continue
        due = batch.updated_at + wait
        if due > current:
            result.waiting.append(batch.number)
            result.due = max(result.due or due, due)
        else:
            result.left.append(batch.number)
    return result


def settle_from_events(
    store: Store, durable: Durable, send_id: int, event_wait: float
) -> list[int]:
    """Record as sent the batches in doubt that SendGrid's events prove it took (a resume
    does this first); the rest stay as they are. Returns the batches settled."""
    settled = durable(
        "settling batches in doubt from SendGrid's events",
        resolve,
        store,
        send_id,
        event_wait=event_wait,
    ).settled
    if settled:
        shown = ", ".join(map(str, settled[:10])) + (" ..." if len(settled) > 10 else "")
        log.info(
            "send %s: SendGrid's events show it took batches %s, left in doubt by a crash; "
            "recorded as sent",
            durable.edition,
            shown,
        )
    return settled
