"""The jobs a person or the scheduler runs: collect, draft, render, send, run.

These string the stages together and nothing more; the CLI, the scheduler and
the web app all call them, so each does exactly the same thing from anywhere.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest import rank, related
from digest.collect import CollectResult, OnSource, collect_all
from digest.config import Settings
from digest.copies import (
    letters_for_send,
    prepare_copies,
    rendered_copies,
    send_variants,
    write_edition,
)
from digest.errors import DigestError, NotFoundError, SendError
from digest.models import Batch, Edition, RenderedEdition
from digest.send import control, letter_for, make_backend, send_now, subjects
from digest.send.base import Backend, Letter
from digest.send.doubt import settle_from_events
from digest.send.durable import Durable, database_errors
from digest.send.ledger import (
    ACTIVE_STATES,
    RetryPolicy,
    SendReport,
    chunked,
    deliver,
    open_send,
    report,
    settle,
)
from digest.send.reports import doubt_note
from digest.store import Store
from digest.store.subjects import snapshot_test_send, subject_test
from digest.subscribers import ImportReport, normalise_email

log = logging.getLogger("digest.jobs")


@dataclass
class Watch:
    """How a shell follows a long job, and stops it. Every part is optional: a job run
    by a test or a script is watched by nobody.

    - `on_source(done, total, name)`: a collect read one more source;
    - `on_start(report)`: a send begins, with what its ledger held before;
    - `on_progress(count)`: `count` more recipients sent;
    - `stop`: set by the shell (a signal, the scheduler shutting down) to stop after
      the batches in flight, leaving the rest pending for a resume;
    - `holder`: the lease on the send this run holds, if any (send/control.py).
    """

    on_source: OnSource | None = None
    on_start: Callable[[SendReport], None] | None = None
    on_progress: Callable[[int], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    holder: str = ""


def open_store(settings: Settings) -> Store:
    """The store the settings name, or one line naming the setting (environment)."""
    from digest import environment

    return environment.open_store(settings)


def today(settings: Settings) -> date:
    """The date of the next edition: today in the newsroom's zone."""
    return datetime.now(settings.newsroom.zone).date()


def upcoming(settings: Settings, now: datetime | None = None) -> date:
    """The edition editors are working on: today's until its send time, then tomorrow's."""
    local = (now or datetime.now(UTC)).astimezone(settings.newsroom.zone)
    day = local.date()
    return day if local.time() < settings.edition.send_time else day + timedelta(days=1)


def collect(
    settings: Settings,
    store: Store,
    sources: Sequence[str] | None = None,
    *,
    pages: Sequence[str] | None = None,
    cms: Sequence[str] | None = None,
    on_source: OnSource | None = None,
    full: bool = False,
) -> CollectResult:
    """Collect digest.toml's sources, or only the ones given: `sources` are feeds,
    page-view CSVs (by the .csv ending) and access logs (a name with ".log" in it:
    access.log, access.log.2.gz), `pages` article pages, `cms` CMS exports.
    `on_source` is told as each source is done (collect_all); `full` reads every source
    whole, even one that says it has not changed."""
    if not (sources or pages or cms):
        return collect_all(settings, store, on_source=on_source, full=full)
    given = list(sources or [])
    csvs = [s for s in given if s.lower().endswith(".csv")]
    logs = [s for s in given if s not in csvs and ".log" in Path(s).name.lower()]
    return collect_all(
        settings,
        store,
        feeds=[s for s in given if s not in csvs and s not in logs],
        pageviews=csvs,
        pages=list(pages or []),
        cms=list(cms or []),
        access_logs=logs,
        on_source=on_source,
        full=full,
    )


def draft(settings: Settings, store: Store, day: date) -> Edition:
    """Rank the day's stories into a draft, find the related stories (digest.related),
    and render it (prepare_copies).

    Rendering here, hours before the send, is what makes a broken template an
    error at draft time rather than at 6 a.m., and the stored copies are what the
    editor previews and what the send mails.

    An edition an editor approved, or one already being sent, is kept as it is:
    re-ranking it would silently replace what the editor signed off or what some
    readers already received.
    """
    name = day.isoformat()
    existing = store.editions.load_edition(name)
    if existing is not None and store.sends.get_send(name) is not None:
        log.info("edition %s has a send already; keeping it as it went out", name)
        return existing
    if existing is not None and existing.status == "approved":
        log.info("edition %s was approved by an editor; keeping it as approved", name)
        edition = existing
    else:
        edition = rank.draft(store, settings, day)
        # After ranking: what is related depends on what the edition shows already.
        overrides = store.editions.load_overrides(name)
        edition.related = related.for_edition(store, edition, settings.related, overrides)
        store.editions.save_related(edition)
    prepare_copies(settings, store, edition)
    return edition


def load_edition(store: Store, name: str) -> Edition:
    edition = store.editions.load_edition(name)
    if edition is None:
        known = ", ".join(store.editions.edition_names()[:5]) or "none yet"
        raise NotFoundError(
            f"no edition {name!r} (known: {known}); run `digest draft --date {name}` first"
        )
    return edition


def render_edition(
    settings: Settings, store: Store, name: str, *, sections: str = ""
) -> RenderedEdition:
    """The edition rendered (or its stored copy, when that is current): the whole one,
    or the copy a reader with these section preferences gets (rank.variant_key)."""
    edition = load_edition(store, name)
    key = rank.variant_key(edition, sections)
    keep = store.sends.get_send(name) is not None
    return rendered_copies(settings, store, edition, [key], keep=keep)[key]


def sync_subscribers(settings: Settings, store: Store) -> ImportReport | None:
    """Import the newsroom's list (environment.subscribers_file: named, it must be there)
    before a send snapshots its recipients; never resubscribes anyone."""
    from digest import environment

    path = environment.subscribers_file(settings)
    return None if path is None else environment.import_subscribers(store, path)


@dataclass
class DryRun:
    backend: str = ""
    recipients: int = 0
    batches: int = 0
    largest_batch: int = 0
    bytes_per_message: int = 0
    largest_request: int = 0  # bytes of the biggest API request (SendGrid)
    request_bytes: int = 0  # bytes of all API requests together (SendGrid)
    copies: int = 0  # copies of the edition: the whole one and one per section preference
    suppressed: int = 0  # active subscribers not mailed: they unsubscribed, bounced, complained


def refuse_no_readers(settings: Settings, store: Store, edition: Edition) -> None:
    """A send with nobody to deliver to is refused before anything is recorded: a send
    of 0 of 0 would be "done", and the edition, which then has a send, could never go
    out to the readers once the list is in (a missing subscribers file, a send before
    the first import)."""
    if sum(store.subscribers.deliverable_sections().values()):
        return
    counts = store.subscribers.count_subscribers()
    known = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
    known = known or "the list is empty"
    named = settings.delivery.subscribers_file
    if named is not None and not named.is_file():
        known += f"; [delivery] subscribers_file {named} does not exist"
    raise SendError(
        f"edition {edition.name} has no one to send to: no subscriber is active and "
        f"unsuppressed ({known}). Nothing was sent or "
        "recorded; import the list (`digest subscribers import FILE`), then "
        f"`digest send {edition.name}`"
    )


def refuse_empty(edition: Edition) -> None:
    """An edition with no story at all is never mailed: a feed that broke overnight must
    not become an empty email to every reader at 6 a.m."""
    if edition.lead is None:
        raise SendError(
            f"edition {edition.name} has no stories: nothing was collected for its window "
            f"({edition.window_start:%Y-%m-%d %H:%M} to {edition.window_end:%Y-%m-%d %H:%M} "
            "UTC). Nothing was sent; check the sources (`digest collect`), then "
            f"`digest draft --date {edition.name}`"
        )


def dry_run(settings: Settings, store: Store, name: str, backend: str | None = None) -> DryRun:
    """Build every batch as a send would and measure it; nothing is sent or recorded.

    For SendGrid every request body is built, so its size and the time it takes
    are what the send will see.
    """
    from digest.send.sendgrid import RequestWriter

    edition = load_edition(store, name)
    copies = prepare_copies(settings, store, edition, save=False)
    result = DryRun(backend=backend or settings.delivery.backend, copies=len(copies))
    deliverable = sum(store.subscribers.deliverable_sections().values())
    result.suppressed = store.subscribers.count_subscribers().get("active", 0) - deliverable
    # As a send cuts them: by section preference, then by address.
    for sections in sorted(store.subscribers.deliverable_sections()):
        letter = letter_for(settings, copies[rank.variant_key(edition, sections)])
        writer = (
            RequestWriter(
                letter,
                asm_group_id=settings.delivery.asm_group_id,
                sandbox=settings.delivery.sandbox,
            )
            if result.backend == "sendgrid"
            else None
        )
        recipients = store.subscribers.deliverable_recipients(sections=sections)
        for batch in chunked(recipients, settings.delivery.batch_size):
            result.batches += 1
            result.recipients += len(batch)
            result.largest_batch = max(result.largest_batch, len(batch))
            size = len(letter.message_for(batch[0]).as_bytes())
            result.bytes_per_message = max(result.bytes_per_message, size)
            if writer is not None:
                body = writer.body(Batch(send_id=0, number=result.batches, recipients=batch))
                result.largest_request = max(result.largest_request, len(body))
                result.request_bytes += len(body)
    return result


def send_test(
    settings: Settings,
    store: Store,
    name: str,
    addresses: Sequence[str],
    backend: str | None = None,
    *,
    sections: str = "",
) -> int:
    """Send the draft to editors with a [TEST] subject. Nothing is recorded against the edition.

    sections: the copy a reader with these section preferences gets ("" = the whole one).
    """
    from digest import environment

    rendered = render_edition(settings, store, name, sections=sections)
    letter = letter_for(settings, rendered, test=True)
    recipients = [normalise_email(a) for a in addresses]
    environment.ready_to_send(settings, backend or settings.delivery.backend)
    send_now(settings, letter, recipients, backend)
    return len(recipients)


@database_errors
def send(
    settings: Settings,
    store: Store,
    name: str,
    *,
    backend: str | None = None,
    resume: bool = False,
    retry_in_doubt: bool = False,
    limit: int | None = None,
    policy: RetryPolicy | None = None,
    allow_clipped: bool = False,
    watch: Watch | None = None,
) -> SendReport:
    """Send an edition to every deliverable subscriber, exactly once.

    The first call snapshots the recipients. A later call for the same edition
    sends nothing new unless the send was interrupted and `resume` is given; it
    goes through the backend the send started with unless another is named. It
    first settles the batches a crash left in doubt that SendGrid's events prove
    were taken (send/doubt.py). A copy that Gmail would clip is not sent unless
    `allow_clipped` (render_checks.clip_gate).

    The ledger rides out a database that goes away for up to [delivery]
    ledger_retry_seconds; past that, or if it is away before anything is recorded,
    the send stops with DatabaseUnavailable, one line that says how to resume.
    """
    policy = policy or RetryPolicy.from_settings(settings.delivery)
    durable = Durable(name, policy.ledger_retry_seconds)
    edition = load_edition(store, name)
    existing = store.sends.get_send(name)
    if retry_in_doubt:
        control.refuse_while_driven(store, name, watch.holder if watch else "")
    test = durable("reading the subject test", subject_test, store, name)
    snapshot = None if test is None else functools.partial(snapshot_test_send, test=test)
    if existing is None:
        refuse_empty(edition)
        refuse_no_readers(settings, store, edition)
    backend_name = backend or (existing.backend if existing else settings.delivery.backend)
    # The backend, its folder and the signing key first: a missing API key or a folder
    # that cannot be written fails here, before anything is recorded.
    from digest import environment

    environment.ready_to_send(settings, backend_name)
    mailer = make_backend(settings, backend_name)
    try:
        if existing is None:
            # Every copy rendered before the snapshot: a template error or a copy
            # Gmail would clip stops the send here, with nothing recorded.
            from digest.render_checks import clip_gate

            for warning in clip_gate(prepare_copies(settings, store, edition), allow_clipped):
                log.warning("%s; sent as it is (--allow-clipped)", warning)
        send_id, created = open_send(
            store, name, backend_name, settings.delivery.batch_size, durable, snapshot
        )
        seen = durable("reading the ledger", store.sends.send_by_id, send_id).updated_at
        if test is not None:  # as the snapshot made it; none if the send has no test batches
            test = durable("reading the subject test", subject_test, store, name)
            test = test if test is not None and test.test_batches is not None else None
        wait = policy.event_wait_seconds
        settled = [] if created else settle_from_events(store, durable, send_id, wait)
        before = durable(
            "reading the ledger", report, store, send_id, created=created, event_wait=wait
        )
        before.settled_now = settled
        if not created:
            unfinished = before.pending + before.failed + (before.in_doubt if retry_in_doubt else 0)
            if unfinished == 0:
                result = durable(
                    "recording how the send stands",
                    settle,
                    store,
                    send_id,
                    created=False,
                    event_wait=wait,
                )
                result.settled_now = settled
                if result.in_doubt:
                    log.warning("edition %s: %s", name, result.note)
                durable("marking the edition", _mark_edition, store, name, result)
                return result
            if not resume:
                raise SendError(
                    f"edition {name} was already sent in part ({before.sent} of "
                    f"{before.recipients} recipients; {before.pending + before.failed} left, "
                    f"{before.in_doubt} in doubt); run `digest send {name} --resume` to finish it"
                )
        if before.in_doubt and not retry_in_doubt:
            log.warning(
                "edition %s: %d recipients in doubt are not resent: %s",
                name,
                before.in_doubt,
                doubt_note(before),
            )
        if watch and watch.on_start:
            watch.on_start(before)
        durable("marking the edition", store.editions.set_edition_status, name, "sending")
        if not durable("starting the send", _start, store, send_id, seen):
            result = durable("reading the ledger", report, store, send_id, event_wait=wait)
            log.warning(
                "edition %s: %s meanwhile (%s); nothing sent", name, result.state, result.note
            )
            return result
        whole, letters = durable(
            "loading the edition's copies", letters_for_send, settings, store, edition, send_id
        )
        stop = watch.stop if watch else threading.Event()
        go = functools.partial(
            deliver,
            store,
            mailer,
            whole,
            send_id,
            letters=letters,
            limit=limit,
            policy=policy,
            concurrency=settings.delivery.concurrency,
            on_progress=watch.on_progress if watch else None,
            stop=stop,
            subjects=test.subjects if test else (),
        )
        tested = None
        if test is not None and test.winner is None:  # mail the test, wait, choose
            wait_for = settings.subject_tests.wait_seconds
            attempt = functools.partial(go, retry_in_doubt=retry_in_doubt)
            tested = subjects.test_phase(store, durable, send_id, test, wait_for, attempt, stop)
            retry_in_doubt = False  # done by the test's run
        result = tested or go(retry_in_doubt=retry_in_doubt)
        subjects.settle_note(store, durable, send_id, result)
    finally:
        mailer.close()
    result.created = created
    result.settled_now = settled + result.settled_now
    durable("marking the edition", _mark_edition, store, name, result)
    return result


def _start(store: Store, send_id: int, seen: datetime) -> bool:
    """The send to `sending`, unless it changed since this run read it: an operator who
    paused it in between (send/control.py) is not overruled. False if it is no longer
    active then; a send some other run started meanwhile is joined, as a worker would."""
    if store.sends.start_send_if_unchanged(send_id, seen):
        return True
    return store.sends.send_by_id(send_id).state in ACTIVE_STATES


def _mark_edition(store: Store, name: str, result: SendReport) -> None:
    if result.state == "done":
        store.editions.set_edition_status(name, "sent")


def work(
    settings: Settings,
    store: Store,
    *,
    backend: str | None = None,
    once: bool = False,
    poll_seconds: float = 5.0,
    policy: RetryPolicy | None = None,
    watch: Watch | None = None,
) -> int:
    """A worker: send pending batches of every active send, alongside any other workers.

    Each batch is claimed in the store (FOR UPDATE SKIP LOCKED on PostgreSQL), so
    any number of workers on any number of machines share a send without sending
    a batch twice. A worker never resends failed or in-doubt batches: that is
    the operator's call (`digest send EDITION --resume [--retry-in-doubt]`).
    With `once`, it returns when nothing is left to claim; otherwise it polls.
    Returns how many recipients it sent.
    """
    watch = watch or Watch()
    stop = watch.stop
    policy = policy or RetryPolicy.from_settings(settings.delivery)
    letters: dict[str, tuple[Letter, dict[str, Letter]]] = {}
    titles: dict[str, tuple[str, ...]] = {}  # a subject test's subjects, by edition
    mailers: dict[str, Backend] = {}
    total = 0
    try:
        while not stop.is_set():
            sent = 0
            for row in store.sends.list_sends():
                if row.state not in ACTIVE_STATES or not store.sends.batch_states(row.id).get(
                    "pending"
                ):
                    continue
                if row.edition not in letters:
                    edition = load_edition(store, row.edition)
                    letters[row.edition] = letters_for_send(settings, store, edition, row.id)
                    test = subject_test(store, row.edition)
                    titles[row.edition] = test.subjects if test else ()
                whole, by_sections = letters[row.edition]
                backend_name = backend or row.backend
                if backend_name not in mailers:
                    mailers[backend_name] = make_backend(settings, backend_name)
                try:
                    result = deliver(
                        store,
                        mailers[backend_name],
                        whole,
                        row.id,
                        letters=by_sections,
                        subjects=titles[row.edition],
                        retry_failed=False,
                        policy=policy,
                        concurrency=settings.delivery.concurrency,
                        on_progress=watch.on_progress,
                        stop=stop,
                    )
                except SendError as exc:
                    # This send is paused or stopped now, or the database stayed away
                    # past ledger_retry_seconds, and says why; others go on.
                    log.error("worker: %s", exc)
                    continue
                _mark_edition(store, row.edition, result)
                if result.sent_now:
                    log.info("worker: sent %d recipients of %s", result.sent_now, row.edition)
                sent += result.sent_now
            total += sent
            if sent == 0:
                if once:
                    break
                stop.wait(poll_seconds)
    finally:
        for mailer in mailers.values():
            mailer.close()
    return total


@dataclass
class RunSummary:
    edition: Edition
    collected: CollectResult
    subscribers: ImportReport | None
    html_path: Path
    text_path: Path
    send: SendReport
    outbox: Path | None = None
    warnings: list[str] = field(default_factory=list)
    copies: int = 1  # copies of the edition the send mailed: one per section preference


def run(
    settings: Settings,
    store: Store,
    day: date,
    *,
    allow_clipped: bool = False,
    watch: Watch | None = None,
) -> RunSummary:
    """The morning job: collect -> draft -> render -> send, for one edition.

    Run twice for the same day, it sends nobody twice: pending batches of an
    interrupted send are finished, in-doubt ones are left to the operator.
    """
    collected = collect(settings, store, on_source=watch.on_source if watch else None)
    imported: ImportReport | None = None
    list_problem: DigestError | None = None
    try:
        imported = sync_subscribers(settings, store)
    except DigestError as exc:
        list_problem = exc
    edition = draft(settings, store, day)
    rendered = render_edition(settings, store, edition.name)
    data_dir = f"{settings.path}: [storage] data_dir"
    html_path, text_path = write_edition(
        settings, rendered, settings.data_dir / "editions", named_by=data_dir
    )
    if list_problem is not None:
        # Collected, drafted and rendered, so editors can work on it; only the send
        # waits for the list, with nothing recorded, so it can go out once it is there.
        raise list_problem
    result = send(
        settings,
        store,
        edition.name,
        resume=True,
        allow_clipped=allow_clipped,
        watch=watch,
    )
    outbox = None
    if result.backend == "outbox":
        outbox = settings.delivery.outbox_dir / edition.name
    copies = set(send_variants(store, edition, result.send_id).values())
    return RunSummary(
        copies=len(copies) or 1,
        edition=edition,
        collected=collected,
        subscribers=imported,
        html_path=html_path,
        text_path=text_path,
        send=result,
        outbox=outbox,
        warnings=rendered.warnings,
    )
