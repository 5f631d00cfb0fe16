"""`digest send, sends, worker`: an edition out to every subscriber exactly once, what
went out, and workers that help a send along; the progress bar and the send report
that `digest run` prints too."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digest.cli.base import (
    AllowClippedOption,
    Command,
    ConfigOption,
    at_least,
    console,
    counted,
    email_address,
    err,
    print_error,
    session,
)

if TYPE_CHECKING:  # the commands import the pipeline when they run: a fast `digest --help`
    from digest import config
    from digest.send.ledger import SendReport

app = typer.Typer()


@contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM: finish the batch in flight, record it, then stop."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err.print("[yellow]warning: stopping after the current batch (again to abort)[/yellow]")
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1e6 else f"{count / 1e3:,.0f} KB"


def _blast_radius(delivery: config.Delivery) -> str:
    """How much one crash can leave in doubt, and the setting that bounds it."""
    return (
        f"a crash leaves at most {delivery.concurrency} "
        f"{'batch' if delivery.concurrency == 1 else 'batches'} of up to "
        f"{delivery.batch_size:,} in doubt per sending process ([delivery] concurrency = "
        f"{delivery.concurrency})"
    )


def _batches(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")


def print_send(result: SendReport, delivery: config.Delivery) -> None:
    from rich.markup import escape

    console.print(
        f"send {result.edition} via {result.backend}: {result.state}; "
        f"{result.sent:,} of {counted(result.recipients, 'recipient')} sent "
        f"({result.sent_now:,} now) in {counted(result.batches, 'batch', 'batches')}",
        highlight=False,
    )
    if result.settled_now:
        console.print(
            f"settled by events: batches {_batches(result.settled_now)}, left in doubt by a "
            "crash, were taken by SendGrid (its events say so) and are recorded as sent",
            highlight=False,
        )
    if result.in_doubt:
        console.print(
            f"[yellow]{counted(result.in_doubt, 'recipient')} in doubt[/yellow] "
            f"(batches {_batches(result.in_doubt_batches)}): they may or may not have been "
            f"sent; {escape(_blast_radius(delivery))}",
            highlight=False,
        )
    if result.failed:
        console.print(
            f"[red]{counted(result.failed, 'recipient')} in failed batches[/red]; "
            "see `digest sends`"
        )
    if result.note and result.state != "done":
        console.print(result.note, highlight=False, markup=False)


@app.command(cls=Command)
def send(
    edition: Annotated[str, typer.Argument(help="The edition's date, YYYY-MM-DD.")],
    config_path: ConfigOption = Path("digest.toml"),
    backend: Annotated[
        str | None, typer.Option(help="outbox, smtp or sendgrid (default: digest.toml).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build every batch and count; send nothing.")
    ] = False,
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test", help="Send a [TEST] copy to this address only; repeatable. Records nothing."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted send.")] = False,
    retry_in_doubt: Annotated[
        bool, typer.Option("--retry-in-doubt", help="Also resend batches left in doubt by a crash.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Send at most this many batches, then stop.")
    ] = None,
    sections: Annotated[
        str,
        typer.Option(
            help='With --test: the copy a reader with these sections gets ("Sports;Arts").'
        ),
    ] = "",
    allow_clipped: AllowClippedOption = False,
) -> None:
    """Send an edition to every active subscriber, exactly once."""
    from digest import jobs

    at_least("--limit", limit, 1)
    with session(config_path) as (settings, store):
        if sections and not test:
            print_error(
                "--sections goes with --test (a real send gives each reader their own copy)"
            )
            raise typer.Exit(2)
        if test:
            test = [email_address(address, "--test") for address in test]
            count = jobs.send_test(settings, store, edition, test, backend, sections=sections)
            copy = f" (the copy for {sections!r})" if sections else ""
            console.print(
                f"test copy of {edition}{copy} sent to {counted(count, 'address', 'addresses')}"
            )
            return
        if dry_run:
            d = jobs.dry_run(settings, store, edition, backend)
            requests = (
                f"; {d.backend} requests up to {_size(d.largest_request)}, "
                f"{_size(d.request_bytes)} in all"
                if d.largest_request
                else ""
            )
            console.print(
                f"dry run via {d.backend}: {counted(d.recipients, 'recipient')} "
                f"({d.suppressed:,} suppressed) in "
                f"{counted(d.batches, 'batch', 'batches')} "
                f"(largest {d.largest_batch:,}); {d.copies} "
                f"{'copy' if d.copies == 1 else 'copies'} of the edition (by section "
                f"preference); up to {d.bytes_per_message // 1024} KB "
                f"per message{requests}; nothing sent"
            )
            return
        from digest.cli.progress import progress

        with stop_on_signal() as stop, progress() as bars:
            result = jobs.send(
                settings,
                store,
                edition,
                backend=backend,
                resume=resume,
                retry_in_doubt=retry_in_doubt,
                limit=limit,
                allow_clipped=allow_clipped,
                watch=bars.watch(stop),
            )
        print_send(result, settings.delivery)
        if result.state != "done":
            raise typer.Exit(1)


@app.command(cls=Command)
def sends(
    edition: Annotated[
        str | None, typer.Argument(help="Show one edition's send in detail.")
    ] = None,
    config_path: ConfigOption = Path("digest.toml"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each send's report as JSON.")
    ] = False,
    pause: Annotated[
        bool,
        typer.Option(
            "--pause",
            help="Pause EDITION's send: no batch more is claimed, those in flight finish. "
            "`digest send EDITION --resume` goes on.",
        ),
    ] = False,
) -> None:
    """What went out: each send's state, counts per batch state, failures with reasons."""
    from dataclasses import asdict

    from rich.table import Table

    from digest.send.journal import in_doubt_detail
    from digest.send.ledger import report
    from digest.send.reports import in_doubt_line

    if pause and edition is None:
        print_error("--pause needs the edition: `digest sends EDITION --pause`")
        raise typer.Exit(2)
    with session(config_path) as (settings, store):
        if pause and edition is not None:
            import getpass

            from digest.send import control

            console.print(control.pause(store, edition, f"{getpass.getuser()} (command line)"))
            return
        rows = [r for r in store.sends.list_sends() if edition is None or r.edition == edition]
        if edition and not rows:
            print_error(f"no send for edition {edition}")
            raise typer.Exit(1)
        wait = settings.delivery.event_wait_seconds
        reports = [report(store, row.id, event_wait=wait) for row in rows]
        if as_json:
            sys.stdout.write(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
            return
        table = Table()
        for column in (
            "edition",
            "backend",
            "state",
            "recipients",
            "sent",
            "pending",
            "in doubt",
            "failed",
        ):
            table.add_column(column)
        for r in reports:
            table.add_row(
                r.edition,
                r.backend,
                r.state,
                f"{r.recipients:,}",
                f"{r.sent:,}",
                f"{r.pending:,}",
                f"{r.in_doubt:,}",
                f"{r.failed:,}",
            )
        console.print(table)
        for r in reports:
            if r.settled_by_events:
                console.print(
                    f"{r.edition}: batches {_batches(r.settled_by_events)} settled by events: "
                    "left in doubt by a crash, recorded as sent because SendGrid's events "
                    "show it took them",
                    markup=False,
                )
        if edition and reports[0].in_doubt:
            console.print(_blast_radius(settings.delivery), markup=False)
        if edition:
            for b in store.sends.failed_batches(rows[0].id):
                if b.state == "sending":
                    detail = in_doubt_detail(store, rows[0].id, b.number, b.size)
                    console.print(in_doubt_line(reports[0], b, wait, detail), markup=False)
                else:
                    console.print(
                        f"batch {b.number} ({counted(b.size, 'recipient')}) failed after "
                        f"{counted(b.attempts, 'try', 'tries')}: "
                        f"{b.response_code or ''} {b.error or ''}".rstrip(),
                        markup=False,
                    )
            for number, error in store.sends.refusals(rows[0].id):
                console.print(f"batch {number}: {error}", markup=False)
            from digest.send.subjects import describe

            for line in describe(store, rows[0].edition, rows[0].id):
                if line != rows[0].note:
                    console.print(line, markup=False)
            if rows[0].note:
                console.print(rows[0].note, markup=False)


@app.command(cls=Command)
def worker(
    config_path: ConfigOption = Path("digest.toml"),
    backend: Annotated[
        str | None, typer.Option(help="outbox, smtp or sendgrid (default: each send's own).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Exit when no send has a batch left to claim.")
    ] = False,
    poll: Annotated[
        float, typer.Option(help="Seconds between looks for work when there is none.")
    ] = 5.0,
) -> None:
    """Help send: claim pending batches of every active send, alongside other workers.

    Start `digest send EDITION` once; run any number of workers, on any machine
    sharing the PostgreSQL database, to go faster. A worker never resends failed
    or in-doubt batches; that is `digest send EDITION --resume`.
    """
    from digest import jobs

    at_least("--poll", poll, 0.1)
    with session(config_path) as (settings, store), stop_on_signal() as stop:
        watch = jobs.Watch(stop=stop)
        sent = jobs.work(
            settings, store, backend=backend, once=once, poll_seconds=poll, watch=watch
        )
        console.print(f"worker: {counted(sent, 'recipient')} sent")
