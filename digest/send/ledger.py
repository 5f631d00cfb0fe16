"""The send ledger: exactly once, visibly, resumably.

A send snapshots its recipients into numbered batches (pending). Each batch is
moved to `sending` and committed *before* the API call, and to `sent` or
`failed` and committed *after* it. So a crash leaves at most one batch per
worker in `sending`: "in doubt", because we cannot know whether the API took
it. A resumed send skips sent batches and leaves in-doubt ones alone unless the
operator says so (retry_in_doubt), since resending may mail those people twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from digest.errors import SendError
from digest.models import Batch, Recipient
from digest.send.base import Backend, BatchRejected, Letter, SendStopped, TransientError
from digest.store import Store

log = logging.getLogger("digest.send")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one batch before calling it failed."""

    attempts: int = 6
    base_delay: float = 0.5  # seconds; doubled each attempt, with full jitter
    max_delay: float = 60.0
    max_consecutive_failures: int = 5  # then the send pauses itself
    rate_per_second: float = 0.0  # recipients per second; 0 = no cap
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # "Full jitter" (AWS Architecture Blog, Exponential Backoff and Jitter).
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


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
    failed: int = 0
    state: str = ""
    note: str = ""
    created: bool = False


def chunked(recipients: Iterator[Recipient], size: int) -> Iterator[list[Recipient]]:
    batch: list[Recipient] = []
    for recipient in recipients:
        batch.append(recipient)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def open_send(
    store: Store, edition: str, backend: str, recipients: Iterator[Recipient], batch_size: int
) -> tuple[int, bool]:
    """The send for an edition: the existing one, or a new snapshot. Returns (id, created)."""
    existing = store.get_send(edition)
    if existing is not None:
        return int(existing.id), False
    return store.create_send(edition, backend, chunked(recipients, batch_size)), True


def report(store: Store, send_id: int, **extra: object) -> SendReport:
    row = next(r for r in store.list_sends() if r.id == send_id)
    states = store.batch_states(send_id)
    doubt = [b.number for b in store.failed_batches(send_id) if b.state == "sending"]
    result = SendReport(
        edition=row.edition,
        send_id=send_id,
        backend=row.backend,
        recipients=row.recipients,
        batches=row.batches,
        sent=states.get("sent", (0, 0))[1],
        pending=states.get("pending", (0, 0))[1],
        in_doubt=states.get("sending", (0, 0))[1],
        in_doubt_batches=doubt,
        failed=states.get("failed", (0, 0))[1],
        state=row.state,
        note=row.note,
    )
    for key, value in extra.items():
        setattr(result, key, value)
    return result


def deliver(
    store: Store,
    backend: Backend,
    letter: Letter,
    send_id: int,
    *,
    retry_in_doubt: bool = False,
    retry_failed: bool = True,
    limit: int | None = None,
    policy: RetryPolicy | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Push every claimable batch of a send through the backend, recording each step.

    limit: stop after this many batches (for a careful first run).
    stop: set by a signal handler; the current batch finishes, then we return.
    """
    policy = policy or RetryPolicy()
    # Earlier failures go back in the queue once, up front: a failed batch was
    # refused by the API, so retrying it cannot duplicate anyone. Batches that
    # fail during this run stay failed until the next resume.
    requeue = ["failed"] if retry_failed else []
    if retry_in_doubt:
        # The operator has said these people may get a second copy rather than none.
        requeue.append("sending")
    if requeue:
        store.requeue_batches(send_id, requeue)
    store.set_send_state(send_id, "sending")
    sent_now = 0
    batches_done = 0
    consecutive_failures = 0
    started = time.monotonic()
    try:
        while limit is None or batches_done < limit:
            if stop is not None and stop.is_set():
                store.set_send_state(send_id, "paused", "stopped by signal; resume to finish")
                break
            batch = store.claim_batch(send_id)
            if batch is None:
                break
            ok = _push_with_retries(store, backend, letter, batch, policy)
            batches_done += 1
            if ok:
                consecutive_failures = 0
                sent_now += len(batch.recipients)
                if on_progress:
                    on_progress(len(batch.recipients))
            else:
                consecutive_failures += 1
                if consecutive_failures >= policy.max_consecutive_failures:
                    note = (
                        f"paused after {consecutive_failures} batches failed in a row; "
                        "see `digest sends` for the reasons, then resume"
                    )
                    store.set_send_state(send_id, "paused", note)
                    log.error("send %s: %s", letter.edition, note)
                    raise SendError(f"send {letter.edition}: {note}")
            if policy.rate_per_second > 0:
                expected = sent_now / policy.rate_per_second
                ahead = expected - (time.monotonic() - started)
                if ahead > 0:
                    policy.sleep(ahead)
    except SendStopped as exc:
        store.set_send_state(send_id, "stopped", str(exc))
        raise
    finally:
        backend.flush()
    result = report(store, send_id, sent_now=sent_now)
    if result.pending == 0 and result.in_doubt == 0 and result.failed == 0:
        store.set_send_state(send_id, "done")
        result.state = "done"
    elif result.state == "sending":
        store.set_send_state(send_id, "incomplete", _incomplete_note(result))
        result.state, result.note = "incomplete", _incomplete_note(result)
    return result


def _incomplete_note(result: SendReport) -> str:
    parts = []
    if result.pending:
        parts.append(f"{result.pending} recipients not yet sent")
    if result.in_doubt:
        parts.append(
            f"{result.in_doubt} recipients in doubt (batches {_ranges(result.in_doubt_batches)}); "
            "resend them with --retry-in-doubt"
        )
    if result.failed:
        parts.append(f"{result.failed} recipients in failed batches")
    return "; ".join(parts)


def _ranges(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")


def _push_with_retries(
    store: Store, backend: Backend, letter: Letter, batch: Batch, policy: RetryPolicy
) -> bool:
    last_error = ""
    last_status: int | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            result = backend.push(letter, batch)
        except TransientError as exc:
            last_error, last_status = str(exc), exc.status or None
            if attempt == policy.attempts:
                break
            wait = policy.delay(attempt, exc.retry_after)
            log.warning(
                "send %s batch %d: %s; retry %d of %d in %.1fs",
                letter.edition,
                batch.number,
                exc,
                attempt,
                policy.attempts - 1,
                wait,
            )
            policy.sleep(wait)
            continue
        except BatchRejected as exc:
            last_error, last_status = str(exc), exc.status or None
            log.error("send %s batch %d rejected: %s", letter.edition, batch.number, exc)
            break
        except SendStopped:
            # The API refused us outright (bad key): the batch did not go out.
            store.finish_batch(batch.send_id, batch.number, "pending")
            raise
        store.finish_batch(
            batch.send_id,
            batch.number,
            "sent",
            response_code=result.status,
            message_id=result.message_id or None,
        )
        return True
    store.finish_batch(
        batch.send_id, batch.number, "failed", response_code=last_status, error=last_error
    )
    return False
