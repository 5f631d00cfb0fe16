"""The jobs a person or the scheduler runs: collect, draft, render, send, run.

These string the stages together and nothing more; the CLI, the scheduler and
the web app all call them, so each does exactly the same thing from anywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from digest import rank, render
from digest.collect import CollectResult, collect_all
from digest.config import Settings
from digest.errors import NotFoundError, SendError
from digest.models import Batch, Edition, Recipient, RenderedEdition
from digest.send import letter_for, make_backend
from digest.send.ledger import RetryPolicy, SendReport, chunked, deliver, open_send, report
from digest.store import Store
from digest.subscribers import ImportReport, import_csv, normalise_email

log = logging.getLogger("digest.jobs")


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url)


def today(settings: Settings) -> date:
    """The date of the next edition: today in the newsroom's zone."""
    return datetime.now(settings.newsroom.zone).date()


def collect(
    settings: Settings, store: Store, sources: Sequence[str] | None = None
) -> CollectResult:
    if not sources:
        return collect_all(settings, store)
    feeds = [s for s in sources if not s.lower().endswith(".csv")]
    views = [s for s in sources if s.lower().endswith(".csv")]
    return collect_all(settings, store, feeds=feeds, pageviews=views)


def draft(settings: Settings, store: Store, day: date) -> Edition:
    """Rank the day's stories into a draft. An edition already being sent is kept as it is."""
    name = day.isoformat()
    if store.get_send(name) is not None:
        existing = store.load_edition(name)
        if existing is not None:
            log.info("edition %s is already being sent; keeping it as it was sent", name)
            return existing
    return rank.draft(store, settings, day)


def load_edition(store: Store, name: str) -> Edition:
    edition = store.load_edition(name)
    if edition is None:
        known = ", ".join(store.edition_names()[:5]) or "none yet"
        raise NotFoundError(
            f"no edition {name!r} (known: {known}); run `digest draft --date {name}` first"
        )
    return edition


def render_edition(settings: Settings, store: Store, name: str) -> RenderedEdition:
    return render.render(settings, load_edition(store, name))


def preview_values(settings: Settings) -> dict[str, str]:
    """Token values for a copy that nobody in particular reads (previews, the web view)."""
    return {
        "%%greeting%%": "Good morning.",
        "%%greeting_text%%": "Good morning.",
        "%%unsubscribe_url%%": f"{settings.base_url}/unsubscribe",
    }


def write_edition(
    settings: Settings, rendered: RenderedEdition, out_dir: Path
) -> tuple[Path, Path]:
    return render.write(rendered, out_dir, preview_values(settings))


def sync_subscribers(settings: Settings, store: Store) -> ImportReport | None:
    """Import the newsroom's subscribers.csv, if it has one; never resubscribes anyone."""
    path = settings.delivery.subscribers_file
    if not path.exists():
        return None
    return import_csv(store, path)


@dataclass
class DryRun:
    recipients: int = 0
    batches: int = 0
    largest_batch: int = 0
    bytes_per_message: int = 0


def dry_run(settings: Settings, store: Store, name: str) -> DryRun:
    """Build every batch as a send would and count it; nothing is sent or recorded."""
    rendered = render_edition(settings, store, name)
    letter = letter_for(settings, rendered)
    result = DryRun()
    recipients = (Recipient(s.email, s.name) for s in store.deliverable())
    for batch in chunked(recipients, settings.delivery.batch_size):
        result.batches += 1
        result.recipients += len(batch)
        result.largest_batch = max(result.largest_batch, len(batch))
        if not result.bytes_per_message:
            result.bytes_per_message = len(letter.message_for(batch[0]).as_bytes())
    return result


def send_test(
    settings: Settings,
    store: Store,
    name: str,
    addresses: Sequence[str],
    backend: str | None = None,
) -> int:
    """Send the draft to editors with a [TEST] subject. Nothing is recorded against the edition."""
    rendered = render_edition(settings, store, name)
    letter = letter_for(settings, rendered, test=True)
    recipients = [Recipient(normalise_email(a)) for a in addresses]
    mailer = make_backend(settings, backend)
    try:
        mailer.push(letter, Batch(send_id=0, number=0, recipients=recipients))
        mailer.flush()
    finally:
        mailer.close()
    return len(recipients)


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
    on_start: Callable[[SendReport], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Send an edition to every deliverable subscriber, exactly once.

    The first call snapshots the recipients. A later call for the same edition
    sends nothing new unless the send was interrupted and `resume` is given.
    """
    edition = load_edition(store, name)
    rendered = render.render(settings, edition)
    backend_name = backend or settings.delivery.backend
    recipients = (Recipient(s.email, s.name) for s in store.deliverable())
    send_id, created = open_send(
        store, name, backend_name, recipients, settings.delivery.batch_size
    )
    before = report(store, send_id, created=created)
    if not created:
        unfinished = before.pending + before.failed + (before.in_doubt if retry_in_doubt else 0)
        if unfinished == 0:
            if before.in_doubt:
                log.warning("edition %s: %s", name, before.note or "recipients in doubt")
            return before
        if not resume:
            raise SendError(
                f"edition {name} was already sent in part ({before.sent} of {before.recipients} "
                f"recipients; {before.pending + before.failed} left, {before.in_doubt} in doubt); "
                f"run `digest send {name} --resume` to finish it"
            )
    if before.in_doubt and not retry_in_doubt:
        log.warning(
            "edition %s: %d recipients in doubt (batches %s) are not resent; "
            "use --retry-in-doubt to resend them",
            name,
            before.in_doubt,
            ", ".join(map(str, before.in_doubt_batches[:10])),
        )
    if on_start:
        on_start(before)
    edition_status = "sending"
    store.set_edition_status(name, edition_status)
    mailer = make_backend(settings, backend_name)
    if policy is None:
        policy = RetryPolicy(
            rate_per_second=settings.delivery.rate_per_second,
            max_consecutive_failures=settings.delivery.max_consecutive_failures,
        )
    try:
        result = deliver(
            store,
            mailer,
            letter_for(settings, rendered),
            send_id,
            retry_in_doubt=retry_in_doubt,
            limit=limit,
            policy=policy,
            on_progress=on_progress,
            stop=stop,
        )
    finally:
        mailer.close()
    result.created = created
    if result.state == "done":
        store.set_edition_status(name, "sent")
    return result


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


def run(
    settings: Settings,
    store: Store,
    day: date,
    *,
    on_start: Callable[[SendReport], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """The morning job: collect -> draft -> render -> send, for one edition.

    Run twice for the same day, it sends nobody twice: pending batches of an
    interrupted send are finished, in-doubt ones are left to the operator.
    """
    collected = collect(settings, store)
    imported = sync_subscribers(settings, store)
    edition = draft(settings, store, day)
    rendered = render.render(settings, edition)
    html_path, text_path = write_edition(settings, rendered, settings.data_dir / "editions")
    result = send(
        settings,
        store,
        edition.name,
        resume=True,
        on_start=on_start,
        on_progress=on_progress,
        stop=stop,
    )
    outbox = None
    if result.backend == "outbox":
        outbox = settings.delivery.outbox_dir / edition.name
    return RunSummary(
        edition=edition,
        collected=collected,
        subscribers=imported,
        html_path=html_path,
        text_path=text_path,
        send=result,
        outbox=outbox,
        warnings=rendered.warnings,
    )
