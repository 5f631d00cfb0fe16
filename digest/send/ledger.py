"""The send ledger: exactly once, visibly, resumably.

A send snapshots its recipients into numbered batches (pending). Each batch is
moved to `sending` and committed *before* the API call, and to `sent` or
`failed` and committed *after* it. So a crash leaves at most one batch per
worker thread (`concurrency` per process) in `sending`: "in doubt", because we
cannot know whether the API took it. A resumed send skips sent batches; SendGrid's
own events settle the in-doubt ones they can (send/doubt.py), and the rest are left
alone unless the operator says so (retry_in_doubt), since resending may mail those
people twice. Every ledger read and write rides out a database restart
(send/durable.py), so a delivered batch is not left in doubt by a database that
blinked.

Backends that hand messages over one recipient at a time (SMTP, outbox) also
record each recipient as they go (journal.py): a claimed batch leaves out whoever
an earlier claim recorded as accepted, and of such a batch a crash leaves only the
one recipient in flight in doubt.

The fault rules (issue 3), applied here once for every backend:

- 429: wait until the API's reset time (the backend turns `X-RateLimit-Reset`
  into `retry_after`), or back off when it gave none; a batch may wait out
  `rate_limit_waits` of these before it is called failed.
- 5xx, timeouts, dropped connections (TransientError): retry with exponential
  backoff and full jitter, `attempts` tries in all.
- 400/413 (BatchRejected): the batch fails with the API's message; the rest go on.
- 401/403 (SendStopped): the whole send stops at once; the batch goes back to
  pending, since the API refused it.
- `max_consecutive_failures` failed batches in a row: the send pauses itself
  with a note saying why, and the error says what to do.
- `rate_per_second`: a cap on recipients per second for the send in all, shared by
  every worker (send/ratecap.py).

Send states: sending -> done, or incomplete (something left: failed or in doubt),
paused (stopped by a signal, `--limit`, or too many failures; resume to go on),
stopped (the API refused our credentials).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from digest.config import Delivery
from digest.errors import SendError
from digest.models import Batch, Recipient
from digest.send.base import Backend, BatchRejected, Letter, SendStopped, TransientError
from digest.send.doubt import resolve
from digest.send.durable import DatabaseUnavailable, Durable
from digest.send.journal import journal_for
from digest.send.ratecap import rate_cap

# Re-exported: jobs, the CLI, the scheduler and the web import them from here.
from digest.send.reports import (
    ACTIVE_STATES as ACTIVE_STATES,
    SendReport as SendReport,
    incomplete_note as incomplete_note,
    report as report,
    settle,
)
from digest.send.titles import Titles
from digest.store import Store, now
from digest.store.events import claimed_with, requeue_in_doubt

log = logging.getLogger("digest.send")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one batch before calling it failed, and how fast to go."""

    attempts: int = 6
    base_delay: float = 0.5  # seconds; doubled each attempt, with full jitter
    max_delay: float = 60.0  # longest single wait, a 429 reset included
    rate_limit_waits: int = 20
    max_consecutive_failures: int = 5  # then the send pauses itself
    rate_per_second: float = 0.0  # recipients per second; 0 = no cap
    #: How long to wait, once nothing is left to claim, for batches other workers
    #: claimed meanwhile: the longest one batch can take, all its tries included.
    in_flight_wait: float = 600.0
    #: How long a ledger read or write is tried again while the database is away.
    ledger_retry_seconds: float = 120.0
    #: How long an in-doubt SendGrid batch waits for SendGrid's events (send/doubt.py).
    event_wait_seconds: float = 900.0
    #: None waits on the send's stop event, so a signal cuts a long wait short.
    sleep: Callable[[float], None] | None = None

    @classmethod
    def from_settings(cls, delivery: Delivery) -> RetryPolicy:
        return cls(
            attempts=delivery.retry_attempts,
            base_delay=delivery.retry_base_delay,
            max_delay=delivery.retry_max_delay,
            max_consecutive_failures=delivery.max_consecutive_failures,
            rate_per_second=delivery.rate_per_second,
            in_flight_wait=delivery.retry_attempts
            * (delivery.request_timeout + delivery.retry_max_delay),
            ledger_retry_seconds=delivery.ledger_retry_seconds,
            event_wait_seconds=delivery.event_wait_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before try `attempt + 1`.

        "Full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015):
        a random wait up to the exponential bound, so workers that failed together
        do not come back together.
        """
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def rate_limit_wait(self, retry_after: float | None, waits: int) -> float:
        """Seconds to wait after a 429: until the reset if known, else back off."""
        if retry_after is None:
            return self.backoff(waits)
        # A little jitter past the reset, so workers sharing a key do not all
        # return in the same instant and trip the limit again.
        return min(max(retry_after, 0.0), self.max_delay) + random.uniform(0, self.base_delay)


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
    store: Store,
    edition: str,
    backend: str,
    batch_size: int,
    durable: Durable | None = None,
    snapshot: Callable[[Store, str, str, int], int] | None = None,
) -> tuple[int, bool]:
    """The send for an edition: the existing one, or a new snapshot of every deliverable
    subscriber (by `snapshot` if given: a subject test's). Returns (id, created).

    With `durable`, tried again while the database is away. A snapshot whose commit
    went unanswered is found on the next try, and is still ours: created.
    """
    tried = False

    def attempt() -> tuple[int, bool]:
        nonlocal tried
        existing = store.sends.get_send(edition)
        if existing is not None:
            return int(existing.id), tried
        tried = True
        if snapshot is not None:
            return snapshot(store, edition, backend, batch_size), True
        return store.sends.snapshot_send(edition, backend, batch_size), True

    if durable is None:
        return attempt()
    return durable("snapshotting the recipients", attempt)


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
    concurrency: int = 1,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    letters: Mapping[str, Letter] | None = None,
    subjects: Sequence[str] = (),
) -> SendReport:
    """Push every claimable batch of an active send through the backend, recording each step.

    The caller puts the send in an active state first (jobs.send does; a worker
    joins one that is). Other workers may be claiming from the same send.

    retry_failed: put batches the API refused back in the queue first (a refused
        batch was not sent, so this cannot duplicate anyone). Workers joining a
        send pass False: that is the operator's call, made with --resume.
    limit: stop after this many batches (for a careful first run); the send is
        left paused.
    concurrency: batches in flight at once, each in its own thread with its own
        claim, so a crash leaves at most this many in doubt. Two keep the
        process busy building one request while the API answers the other; the
        backend must be thread-safe (all three are).
    stop: set by a signal handler; the batches in flight finish, then we return.
    letters: the copy for each section preference batches were cut by
        (Batch.sections); a batch whose preference is not here gets `letter`.
    subjects: a subject test's subjects; a batch with a variant (Batch.variant)
        goes out with that subject (send/subjects.py).

    A database that goes away meanwhile is waited for (policy.ledger_retry_seconds);
    past that, DatabaseUnavailable says how to resume.
    """
    policy = policy or RetryPolicy()
    durable = Durable(letter.edition, policy.ledger_retry_seconds)
    settled_now: list[int] = []
    if retry_failed:
        durable(
            "putting failed batches back in the queue",
            store.sends.requeue_batches,
            send_id,
            ["failed"],
        )
    if retry_in_doubt:
        # SendGrid's events first: what they prove was taken is sent, never resent.
        # Then the operator has said the rest may get a second copy rather than none;
        # but not those still within the wait for their events (send/doubt.py).
        doubt = durable(
            "settling batches in doubt from SendGrid's events",
            resolve,
            store,
            send_id,
            event_wait=policy.event_wait_seconds,
        )
        settled_now = doubt.settled
        durable(
            "putting batches in doubt back in the queue",
            requeue_in_doubt,
            store,
            send_id,
            doubt.left,
        )
    run = _Run(
        store, durable, backend, letter, send_id, policy, limit, on_progress, stop, letters or {}
    )
    run.titles = Titles(subjects)
    try:
        if concurrency <= 1:
            run.work()
        else:
            threads = [
                threading.Thread(target=run.work, name=f"send-{letter.edition}-{i}", daemon=True)
                for i in range(concurrency)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        backend.flush()
    if run.error is not None:
        raise run.error
    run.wait_for_other_workers()
    stopped = run.stop.is_set() or run.limit_reached
    if stopped and durable("reading the ledger", store.sends.batch_states, send_id).get("pending"):
        note = (
            "stopped by a signal; resume to finish"
            if run.stop.is_set()
            else f"stopped after --limit {limit} batches; resume to finish"
        )
        durable("pausing the send", store.sends.set_send_state, send_id, "paused", note)
    result = durable(
        "recording how the send stands",
        settle,
        store,
        send_id,
        sent_now=run.sent_now,
        event_wait=policy.event_wait_seconds,
    )
    result.settled_now = settled_now
    return result


class _Run:
    """One deliver() call: what its threads share, behind one lock."""

    def __init__(
        self,
        store: Store,
        durable: Durable,
        backend: Backend,
        letter: Letter,
        send_id: int,
        policy: RetryPolicy,
        limit: int | None,
        on_progress: Callable[[int], None] | None,
        stop: threading.Event | None,
        letters: Mapping[str, Letter],
    ) -> None:
        self.store = store
        self.durable = durable
        self.backend = backend
        self.letter = letter
        self.letters = letters
        self.send_id = send_id
        self.policy = policy
        self.limit = limit
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.halt = threading.Event()  # this run must end: paused, stopped or broken
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.claimed = 0
        self.limit_reached = False
        self.sent_now = 0
        self.failures_in_a_row = 0
        self.since = now()
        self.left_in_doubt: set[int] = set()  # ours, left `sending` on purpose
        self.cap = rate_cap(store, send_id, policy.rate_per_second)  # shared by all workers
        self.titles = Titles(())  # a subject test's subjects, by batch: send/subjects.py

    def wait_for_other_workers(self) -> None:
        """Let batches other workers claimed while we ran finish before we settle.

        They are in flight, not in doubt; settling now would report them as in
        doubt and the send as incomplete. A worker that died with one leaves it
        `sending` for good: after in_flight_wait it is reported in doubt.
        """
        deadline = time.monotonic() + self.policy.in_flight_wait
        while not self.stop.is_set() and time.monotonic() < deadline:
            claimed = self.durable(
                "looking for batches in flight",
                self.store.sends.claimed_since,
                self.send_id,
                self.since,
            )
            others = set(claimed) - self.left_in_doubt
            if not others:
                return
            self.stop.wait(0.2)

    def interrupted(self) -> bool:
        return self.stop.is_set() or self.halt.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep between tries or for the rate cap; a stop or a halt cuts it short."""
        if self.policy.sleep is not None:
            if seconds > 0 and not self.interrupted():
                self.policy.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self.interrupted():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.halt.wait(min(left, 0.2))

    def _may_claim(self) -> bool:
        if self.interrupted():
            return False
        with self.lock:
            if self.limit is not None and self.claimed >= self.limit:
                self.limit_reached = True
                return False
            self.claimed += 1
        return True

    def work(self) -> None:
        try:
            while self._may_claim():
                batch = self._claim()
                if batch is None:
                    return
                # Without whoever an earlier claim recorded as accepted (journal.py).
                batch = journal_for(self.store, batch)
                if self.cap is not None and batch.recipients:
                    turn = self.durable("the rate cap", self.cap.take, len(batch.recipients))
                    self.wait(turn)  # shared with every worker of the send: ratecap.py
                state, reason = _push_with_retries(
                    self.store,
                    self.durable,
                    self.backend,
                    self.titles.letter(self.letters.get(batch.sections, self.letter), batch),
                    batch,
                    self.policy,
                    self.wait,
                    self.interrupted,
                    self.halt.set,
                )
                self._record(batch, state, reason)
        except SendStopped as exc:
            self._fail(exc)
            # The refusal is the error to report; a database away as well changes nothing.
            with contextlib.suppress(DatabaseUnavailable):
                self.durable(
                    "stopping the send",
                    self.store.sends.set_send_state,
                    self.send_id,
                    "stopped",
                    str(exc),
                )
        except BaseException as exc:  # a bug or a lost database: the batch stays in doubt
            self._fail(exc)

    def _claim(self) -> Batch | None:
        """Claim the next pending batch while the send is active, across a database restart.

        A claim whose commit went unanswered may have gone through: the token it
        wrote finds that batch on the next try, rather than a second claim leaving
        the first one `sending` (in doubt) with nobody sending it.
        """
        token = uuid.uuid4().hex
        tried = False

        def attempt() -> Batch | None:
            nonlocal tried
            if tried and (mine := claimed_with(self.store, self.send_id, token)) is not None:
                return mine
            tried = True
            # Nothing if the send was paused or stopped by someone else (another
            # worker's failures, the operator): leave it as they left it.
            return self.store.sends.claim_batch(self.send_id, token=token, while_send=ACTIVE_STATES)

        return self.durable("claiming a batch", attempt)

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
        self.halt.set()

    def _record(self, batch: Batch, state: str, reason: str) -> None:
        size = len(batch.recipients)
        with self.lock:
            if state == "sent":
                self.failures_in_a_row = 0
                self.sent_now += size
            elif state in ("failed", "sending"):  # "sending": gave up part-way, in doubt
                self.failures_in_a_row += 1
                if state == "sending":
                    self.left_in_doubt.add(batch.number)
            failures = self.failures_in_a_row
        if state == "sent" and self.on_progress:
            self.on_progress(size)
        if state in ("failed", "sending") and failures >= self.policy.max_consecutive_failures:
            note = (
                f"paused after {failures} batches in a row failed (last: {reason}); "
                f"fix the cause, then `digest send {self.letter.edition} --resume`"
            )
            if not self.halt.is_set():
                self.durable(
                    "pausing the send",
                    self.store.sends.set_send_state,
                    self.send_id,
                    "paused",
                    note,
                )
                log.error("send %s: %s", self.letter.edition, note)
            self._fail(SendError(f"send {self.letter.edition} {note}"))


def _push_with_retries(
    store: Store,
    durable: Durable,
    backend: Backend,
    letter: Letter,
    batch: Batch,
    policy: RetryPolicy,
    wait: Callable[[float], None],
    interrupted: Callable[[], bool],
    halt: Callable[[], None],
) -> tuple[str, str]:
    """Push one claimed batch until it is sent or given up: (the state it is left in, why).

    A stop during a wait between tries leaves the batch pending rather than in
    doubt: the last try was refused or went unanswered, and retrying it is what
    the rules say to do anyway. Unless a message may have gone unrecorded (SMTP, a
    connection lost after DATA: TransientError.partial): then in doubt.

    Each outcome is written through `durable`: after a delivered request above all,
    a database that blinked must not leave the batch in doubt.
    """

    def finish(state: str, **values: Any) -> None:
        durable(
            f"recording batch {batch.number} as {_STATE_WORDS[state]}",
            store.sends.finish_batch,
            batch.send_id,
            batch.number,
            state,
            **values,
        )

    if not batch.recipients:  # all accepted, recipient by recipient, by earlier claims
        finish("sent", message_id="accepted earlier")
        return "sent", ""
    tries = 0
    rate_limited = 0
    while True:
        tries += 1
        try:
            result = backend.push(letter, batch)
        except TransientError as exc:
            if exc.status == 429:
                rate_limited += 1
                tries -= 1  # waiting out a rate limit is not a failed try
                give_up = rate_limited > policy.rate_limit_waits
                delay = policy.rate_limit_wait(exc.retry_after, rate_limited)
            else:
                give_up = tries >= policy.attempts
                delay = policy.backoff(tries)
            if give_up:
                # Some recipients were accepted before the error: resending the batch
                # would mail them twice, so it stays in doubt for the operator.
                state = "sending" if exc.partial else "failed"
                finish(
                    state,
                    response_code=exc.status or None,
                    error=f"{exc} (gave up after {tries + rate_limited} tries)",
                    attempts=batch.attempts + tries + rate_limited - 1,
                )
                log.error("send %s batch %d failed: %s", letter.edition, batch.number, exc)
                return state, str(exc)
            log.warning(
                "send %s batch %d: %s; trying again in %.1fs",
                letter.edition,
                batch.number,
                exc,
                delay,
            )
            wait(delay)
            if interrupted():
                state = "sending" if exc.partial else "pending"
                finish(
                    state,
                    response_code=exc.status or None,
                    error=f"stopped while waiting to try again after: {exc}",
                )
                return state, "stopped while waiting to try again"
            continue
        except BatchRejected as exc:
            durable(
                "suppressing bounced addresses", _suppress_bounces, store, backend.name, exc.bounced
            )
            finish(
                "failed",
                response_code=exc.status or None,
                error=str(exc),
                attempts=batch.attempts + tries + rate_limited - 1,
            )
            log.error("send %s batch %d rejected: %s", letter.edition, batch.number, exc)
            return "failed", str(exc)
        except SendStopped as exc:
            # The API refused us outright (bad key). Halt the other threads before
            # anything else, so none of them claims another batch meanwhile; then
            # record that this batch did not go out.
            halt()
            finish("pending", response_code=exc.status or None)
            raise
        durable(
            "suppressing bounced addresses", _suppress_bounces, store, backend.name, result.bounced
        )
        # A recipient whose message may have gone (SMTP: the connection died after
        # DATA) keeps the batch in doubt; --retry-in-doubt resends only them.
        state = "sending" if result.in_doubt else "sent"
        finish(
            state,
            response_code=result.status,
            message_id=result.message_id or None,
            # Who the server refused, in its words: `digest sends` shows it.
            error=_refusals(result.refused, result.in_doubt) or None,
            attempts=batch.attempts + tries + rate_limited - 1,
        )
        return state, _refusals((), result.in_doubt)


_STATE_WORDS = {"sent": "sent", "failed": "failed", "pending": "pending", "sending": "in doubt"}


def _refusals(
    refused: tuple[tuple[str, str], ...], in_doubt: tuple[tuple[str, str], ...] = ()
) -> str:
    parts = []
    for what, listed in (("refused by the server", refused), ("in doubt", in_doubt)):
        if listed:
            shown = "; ".join(f"{email}: {reply}" for email, reply in listed[:5])
            more = f"; and {len(listed) - 5} more" if len(listed) > 5 else ""
            parts.append(f"{len(listed)} {what}: {shown}{more}")
    return " / ".join(parts)[:2000]


def _suppress_bounces(store: Store, via: str, bounced: tuple[tuple[str, str], ...]) -> None:
    """Addresses the server said do not exist are never mailed again (a hard bounce).

    Only sends go through the ledger; an editor's test copy (jobs.send_test) does not.
    """
    for email, reply in bounced:
        if store.subscribers.suppress(email, "bounced", source=f"{via}: {reply}"[:500]):
            log.warning("%s does not exist (%s); suppressed as bounced", email, reply)
