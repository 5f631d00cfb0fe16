"""`digest ...`: the command line. A thin shell over digest.jobs; no logic of its own."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from digest import config, editor, jobs
from digest.errors import DigestError
from digest.models import Edition, Pick
from digest.send.ledger import SendReport
from digest.store import Store

app = typer.Typer(
    help="The daily news digest: collect stories, rank them, render the email, send it once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
subscribers_app = typer.Typer(
    help="Import, export, list, add and remove subscribers.", no_args_is_help=True
)
app.add_typer(subscribers_app, name="subscribers")

# soft_wrap: a path or an error stays on one line, whatever the terminal width.
console = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The newsroom's settings file.", envvar="DIGEST_CONFIG"),
]
DateOption = Annotated[
    str | None,
    typer.Option("--date", help="The edition's local date, YYYY-MM-DD (default: today there)."),
]
AllowClippedOption = Annotated[
    bool,
    typer.Option(
        "--allow-clipped",
        help="Send even a copy over Gmail's 102 KB clip limit (refused by default).",
    ),
]


class _OneLine(logging.Formatter):
    """`warning: <file>: line 7: ...`: one line per problem, never wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " ")
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("digest")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _error(message: str) -> None:
    """One line on stderr. Plain text: our messages hold [sections] that are not markup."""
    sys.stderr.write(f"error: {message}\n")


@contextmanager
def _session(config_path: Path) -> Iterator[tuple[config.Settings, Store]]:
    """Load settings and open the store; turn our errors, and a database that stops
    answering part-way, into one line and an exit status."""
    from digest import environment

    _setup_logging()
    settings: config.Settings | None = None
    try:
        settings = config.load(config_path)
        store = jobs.open_store(settings)
        try:
            yield settings, store
        finally:
            store.close()
    except DigestError as exc:
        _error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except environment.DATABASE_LOST as exc:
        if settings is None:
            raise
        _error(str(environment.lost_database(settings, exc)))
        raise typer.Exit(2) from None


def _day(settings: config.Settings, value: str | None, *, upcoming: bool = False) -> date:
    if value is None:
        return jobs.upcoming(settings) if upcoming else jobs.today(settings)
    try:
        return date.fromisoformat(value)
    except ValueError:
        _error(f"{value!r} is not a date; give it as YYYY-MM-DD")
        raise typer.Exit(2) from None


def _pick_row(pick: Pick) -> list[str]:
    b = pick.breakdown
    return [
        str(pick.position),
        pick.story.title[:70],
        pick.story.section,
        f"{pick.score:.3f}",
        " ".join(
            [pick.note] * bool(pick.note)
            + [f"{k[:4]}={v:.2f}" for k, v in b.items() if k != "total"]
        ),
        str(pick.views),
    ]


def _edition_json(edition: Edition) -> dict[str, Any]:
    def pick(p: Pick) -> dict[str, Any]:
        return {
            "position": p.position,
            "title": p.story.title,
            "url": p.story.url,
            "section": p.story.section,
            "published_at": p.story.published_at.isoformat(),
            "score": p.score,
            "breakdown": p.breakdown,
            "views": p.views,
            "note": p.note,
        }

    return {
        "edition": edition.name,
        "send_at": edition.send_at.isoformat(),
        "window": [edition.window_start.isoformat(), edition.window_end.isoformat()],
        "subject": edition.subject,
        "preheader": edition.preheader,
        "status": edition.status,
        "lead": pick(edition.lead) if edition.lead else None,
        "more": [pick(p) for p in edition.more],
        "most_read": [pick(p) for p in edition.most_read],
    }


def _print_edition(edition: Edition) -> None:
    console.print(f"[bold]Edition {edition.name}[/bold]  ({edition.status})")
    console.print(f"Subject: {edition.subject}", highlight=False, markup=False)
    for title, picks in (
        ("Lead", [edition.lead] if edition.lead else []),
        ("More in News", edition.more),
        ("Most Read", edition.most_read),
    ):
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("#", "headline", "section", "score", "why", "views"):
            table.add_column(column)
        for p in picks:
            table.add_row(*_pick_row(p))
        if not picks:
            note = "no page-view data for this window" if title == "Most Read" else "no stories"
            table.add_row("", f"(left out: {note})", "", "", "", "")
        console.print(table)


@contextmanager
def _progress() -> Iterator[tuple[Callable[[SendReport], None], Callable[[int], None]]]:
    """A progress bar for a send: recipients sent, rate, time left."""
    columns = (
        TextColumn("[bold]sending[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task("send", total=None, rate="")

        def on_start(before: SendReport) -> None:
            bar.update(task, total=before.recipients, completed=before.sent)

        def on_progress(count: int) -> None:
            bar.advance(task, count)
            speed = bar.tasks[0].speed
            if speed:
                bar.update(task, rate=f"{speed:,.0f}/s")

        yield on_start, on_progress


@contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM: finish the batch in flight, record it, then stop."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err.print("[yellow]stopping after the current batch (again to abort)[/yellow]")
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


def _print_send(result: SendReport, delivery: config.Delivery) -> None:
    console.print(
        f"send {result.edition} via {result.backend}: {result.state}; "
        f"{result.sent:,} of {result.recipients:,} recipients sent "
        f"({result.sent_now:,} now) in {result.batches:,} "
        f"{'batch' if result.batches == 1 else 'batches'}",
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
            f"[yellow]{result.in_doubt:,} recipients in doubt[/yellow] "
            f"(batches {_batches(result.in_doubt_batches)}): they may or may not have been "
            f"sent; {escape(_blast_radius(delivery))}",
            highlight=False,
        )
    if result.failed:
        console.print(
            f"[red]{result.failed:,} recipients in failed batches[/red]; see `digest sends`"
        )
    if result.note and result.state != "done":
        console.print(result.note, highlight=False, markup=False)


@app.command()
def run(
    config_path: ConfigOption = Path("digest.toml"),
    day: DateOption = None,
    allow_clipped: AllowClippedOption = False,
) -> None:
    """Collect, draft, render and send today's edition (the morning job)."""
    with _session(config_path) as (settings, store):
        edition_day = _day(settings, day)
        with _stop_on_signal() as stop, _progress() as (on_start, on_progress):
            summary = jobs.run(
                settings,
                store,
                edition_day,
                on_start=on_start,
                on_progress=on_progress,
                stop=stop,
                allow_clipped=allow_clipped,
            )
        c = summary.collected
        console.print(
            f"[bold]Edition {summary.edition.name}[/bold]: {summary.edition.subject}",
            highlight=False,
        )
        console.print(
            f"collected: {c.new} new, {c.updated} updated stories; "
            f"{c.pageview_rows} page-view rows"
            + (f"; {len(c.failed_sources)} sources failed" if c.failed_sources else "")
        )
        if summary.subscribers:
            s = summary.subscribers
            console.print(
                f"subscribers: {s.read} rows read, {s.added} added, {s.updated} updated, "
                f"{len(s.rejected)} rejected, {s.duplicates} duplicates, "
                f"{s.kept_out} left earlier and stay unsubscribed"
            )
        e = summary.edition
        console.print(
            f"edition: lead + {len(e.more)} more in news + {len(e.most_read) or 'no'} most read"
            + (
                f"; {summary.copies} copies, one per section preference"
                if summary.copies > 1
                else ""
            )
        )
        _print_send(summary.send, settings.delivery)
        console.print(f"html: {summary.html_path}")
        console.print(f"text: {summary.text_path}")
        if summary.outbox:
            console.print(f"outbox: {summary.outbox}")
        if summary.send.state not in ("done",):
            raise typer.Exit(1)


@app.command()
def collect(
    config_path: ConfigOption = Path("digest.toml"),
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="A feed, a page-view CSV (*.csv) or an access log (*.log*): path or URL "
            "(a log: a path or glob); repeatable. Default: the sources in digest.toml.",
        ),
    ] = None,
    page: Annotated[
        list[str] | None,
        typer.Option(
            "--page", help="An article page: URL, file, glob or .txt list; repeatable, in order."
        ),
    ] = None,
    cms: Annotated[
        list[str] | None,
        typer.Option("--cms", help="A WordPress REST posts URL or a JSON Feed; repeatable."),
    ] = None,
) -> None:
    """Read the newsroom's sources (feeds, CMS, article pages, page-view exports) into the
    store. Naming any source with --source, --page or --cms reads only those."""
    with _session(config_path) as (settings, store):
        result = jobs.collect(settings, store, source, pages=page, cms=cms)
        console.print(
            f"{result.new} new stories, {result.updated} updated, "
            f"{result.pageview_rows} page-view rows"
        )
        if result.failed_sources:
            console.print(f"[red]{len(result.failed_sources)} sources could not be read[/red]")
            raise typer.Exit(1)


@app.command()
def draft(
    config_path: ConfigOption = Path("digest.toml"),
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the edition as JSON.")] = False,
) -> None:
    """Rank the stories into the day's draft and show why each story is where it is."""
    with _session(config_path) as (settings, store):
        edition = jobs.draft(settings, store, _day(settings, day))
        if as_json:
            sys.stdout.write(
                json.dumps(_edition_json(edition), indent=2, ensure_ascii=False) + "\n"
            )
        else:
            _print_edition(edition)


EditionArgument = Annotated[
    str | None,
    typer.Argument(
        help="The edition's date, YYYY-MM-DD (default: the next to go out: today's until "
        "its send time, then tomorrow's)."
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who is making the change, for the record (default: $USER)."),
]
StoryRefs = list[str] | None


def _who(by: str | None) -> str:
    import getpass

    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone at the command line"


def _print_editor_view(view: editor.EditorView) -> None:
    _print_edition(view.edition)
    if view.overrides.subject:
        console.print("(subject set by an editor)")
    for heading, stories in (
        ("Also in the window (pin one to add it)", view.others),
        ("Dropped by an editor (restore to bring back)", view.dropped),
    ):
        if stories:
            console.print(f"[bold]{heading}[/bold]")
            for story in stories:
                when = story.published_at.strftime("%Y-%m-%d %H:%M")
                console.print(f"  {when}  {story.title}  <{story.url}>", markup=False)
    if view.events:
        console.print("[bold]Changes[/bold]")
        for event in view.events[-10:]:
            when = event.at.astimezone().strftime("%Y-%m-%d %H:%M")
            console.print(f"  {when}  {event.who}: {event.action}", markup=False)


@app.command()
def edit(
    edition: EditionArgument = None,
    lead: Annotated[str | None, typer.Option(help="Make this story the lead.")] = None,
    pin: Annotated[
        StoryRefs, typer.Option(help="Put this story first in More (repeat for more, in order).")
    ] = None,
    unpin: Annotated[StoryRefs, typer.Option(help="Let the scores place it again.")] = None,
    drop: Annotated[StoryRefs, typer.Option(help="Leave this story out of every slot.")] = None,
    restore: Annotated[StoryRefs, typer.Option(help="Bring back a dropped story.")] = None,
    up: Annotated[StoryRefs, typer.Option(help="Move this story of More up one place.")] = None,
    down: Annotated[StoryRefs, typer.Option(help="Move this story of More down one place.")] = None,
    subject: Annotated[
        str | None, typer.Option(help='The subject line ("" = the lead\'s headline again).')
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Undo every editor change.")] = False,
    by: ByOption = None,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Steer a draft: lead, pin, drop, reorder, subject. With no change, show the draft,
    the other stories of the window and what editors changed.

    A story is named by its URL or by a word or phrase of its headline or URL that no
    other story of the window shares. Changes apply in this order: reset, restore,
    drop, unpin, lead, pin, up, down, subject; they are kept when a later collect
    ranks the edition again. Changing an approved edition withdraws the approval.
    """
    changes: list[editor.Change] = [editor.Change("reset")] if reset else []
    for action, refs in (
        ("restore", restore),
        ("drop", drop),
        ("unpin", unpin),
        ("lead", [lead] if lead else None),
        ("pin", pin),
        ("up", up),
        ("down", down),
        ("subject", None if subject is None else [subject]),
    ):
        changes += [editor.Change(action, ref) for ref in refs or []]  # type: ignore[arg-type]
    with _session(config_path) as (settings, store):
        name = _day(settings, edition, upcoming=True).isoformat()
        editor.draft_if_missing(settings, store, name)
        result = editor.edit(settings, store, name, changes, _who(by))
        for action in result.actions:
            console.print(f"[green]✓[/green] {action}", highlight=False)
        _print_editor_view(editor.view(settings, store, name))


@app.command()
def approve(
    edition: EditionArgument = None,
    withdraw: Annotated[
        bool, typer.Option("--withdraw", help="Take the approval back; it is a draft again.")
    ] = False,
    by: ByOption = None,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Approve an edition for sending, as it stands (a send job with `approval: approved`
    sends only an approved edition). Every copy is rendered first, so a broken template
    stops the approval here rather than the send."""
    with _session(config_path) as (settings, store):
        name = _day(settings, edition, upcoming=True).isoformat()
        if withdraw:
            editor.withdraw(store, name, _who(by))
            console.print(f"Edition {name} is a draft again.")
            return
        approved = editor.approve(settings, store, name, _who(by))
        console.print(f"[green]✓[/green] Edition {name} approved: {approved.subject}")


@app.command()
def render(
    edition: Annotated[str, typer.Argument(help="The edition's date, YYYY-MM-DD.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for EDITION.html and EDITION.txt.")
    ] = Path("out"),
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Render an edition to HTML and text files, as a reader would see it."""
    with _session(config_path) as (settings, store):
        rendered = jobs.render_edition(settings, store, edition)
        html_path, text_path = jobs.write_edition(settings, rendered, out)
        console.print(f"html: {html_path} ({len(rendered.html.encode()) // 1024} KB)")
        console.print(f"text: {text_path}")


@app.command()
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
    _at_least("--limit", limit, 1)
    with _session(config_path) as (settings, store):
        if sections and not test:
            _error("--sections goes with --test (a real send gives each reader their own copy)")
            raise typer.Exit(2)
        if test:
            test = [_address(address, "--test") for address in test]
            count = jobs.send_test(settings, store, edition, test, backend, sections=sections)
            copy = f" (the copy for {sections!r})" if sections else ""
            console.print(f"test copy of {edition}{copy} sent to {count} address(es)")
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
                f"dry run: {d.recipients:,} recipients in {d.batches:,} batches "
                f"(largest {d.largest_batch:,}); {d.copies} "
                f"{'copy' if d.copies == 1 else 'copies'} of the edition (by section "
                f"preference); up to {d.bytes_per_message // 1024} KB "
                f"per message{requests}; nothing sent"
            )
            return
        with _stop_on_signal() as stop, _progress() as (on_start, on_progress):
            result = jobs.send(
                settings,
                store,
                edition,
                backend=backend,
                resume=resume,
                retry_in_doubt=retry_in_doubt,
                limit=limit,
                on_start=on_start,
                on_progress=on_progress,
                stop=stop,
                allow_clipped=allow_clipped,
            )
        _print_send(result, settings.delivery)
        if result.state != "done":
            raise typer.Exit(1)


@app.command()
def sends(
    edition: Annotated[
        str | None, typer.Argument(help="Show one edition's send in detail.")
    ] = None,
    config_path: ConfigOption = Path("digest.toml"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each send's report as JSON.")
    ] = False,
) -> None:
    """What went out: each send's state, counts per batch state, failures with reasons."""
    from dataclasses import asdict

    from digest.send.journal import in_doubt_detail
    from digest.send.ledger import report
    from digest.send.reports import in_doubt_line

    with _session(config_path) as (settings, store):
        rows = [r for r in store.list_sends() if edition is None or r.edition == edition]
        if edition and not rows:
            console.print(f"no send for edition {edition}")
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
            for b in store.failed_batches(rows[0].id):
                if b.state == "sending":
                    detail = in_doubt_detail(store, rows[0].id, b.number, b.size)
                    console.print(in_doubt_line(reports[0], b, wait, detail), markup=False)
                else:
                    console.print(
                        f"batch {b.number} ({b.size} recipients) failed after {b.attempts} "
                        f"tries: {b.response_code or ''} {b.error or ''}".rstrip(),
                        markup=False,
                    )
            for number, error in store.refusals(rows[0].id):
                console.print(f"batch {number}: {error}", markup=False)
            if rows[0].note:
                console.print(rows[0].note, markup=False)


@app.command()
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
    _at_least("--poll", poll, 0.1)
    with _session(config_path) as (settings, store), _stop_on_signal() as stop:
        sent = jobs.work(settings, store, backend=backend, once=once, poll_seconds=poll, stop=stop)
        console.print(f"worker: {sent:,} recipients sent")


@app.command()
def web(
    config_path: ConfigOption = Path("digest.toml"),
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; keep 127.0.0.1 behind a proxy on this machine."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the unsubscribe pages, the SendGrid event webhook and the newsroom's
    editor and sends pages (foreground).

    Every email links to \\[web] base_url in digest.toml: serve this there,
    behind a reverse proxy with HTTPS, or readers cannot leave (mail clients
    offer one-click unsubscribe, RFC 8058, only over HTTPS).

    /unsubscribe/TOKEN: GET shows the page, POST unsubscribes.
    POST /webhooks/sendgrid: needs SENDGRID_WEBHOOK_VERIFICATION_KEY.
    /editor (preview, pin, drop, reorder, approve) and /sends (read-only): need
    DIGEST_EDITOR_PASSWORD; sign in with your name and that password.
    GET /healthz: "ok". See docs/web.md. Ctrl-C or SIGTERM stops it.
    """
    import uvicorn

    from digest.environment import check_listen
    from digest.web import create_app

    with _session(config_path) as (settings, store):
        check_listen(host, port)
        if not settings.base_url.startswith("https://"):
            sys.stderr.write(
                f"warning: [web] base_url {settings.base_url} is not https://; mail clients "
                "offer one-click unsubscribe (RFC 8058) only for HTTPS links\n"
            )
        # No access log: unsubscribe URLs carry tokens that name the reader and can
        # unsubscribe them; the app logs what it did, with the address masked.
        uvicorn.run(create_app(settings, store), host=host, port=port, access_log=False)


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with an email column; name, sections, status optional.")
    ],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Add or update subscribers from a CSV. Never resubscribes anyone who left."""
    from digest.environment import import_subscribers
    from digest.subscribers import ImportReport

    size = file.stat().st_size if file.is_file() else 0
    columns = (
        TextColumn("[bold]importing[/bold]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with (
        _session(config_path) as (_settings, store),
        Progress(*columns, console=err, disable=not err.is_terminal) as bar,
    ):
        task = bar.add_task("import", total=size or None, rows="")

        def on_progress(report: ImportReport) -> None:
            bar.update(task, completed=report.bytes_read, rows=f"{report.read:,} rows")

        r = import_subscribers(store, file, on_progress=on_progress)
        bar.update(task, completed=size, rows=f"{r.read:,} rows")
    console.print(
        f"{r.read:,} rows: {r.added:,} added, {r.updated:,} updated, "
        f"{len(r.rejected):,} rejected, {r.duplicates:,} duplicates, "
        f"{r.kept_out:,} had left and stay unsubscribed"
    )


@subscribers_app.command("export")
def subscribers_export(
    file: Annotated[Path, typer.Argument(help="Where to write the CSV.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Write every subscriber to a CSV that is safe to open in a spreadsheet."""
    from digest.environment import writing
    from digest.subscribers import export_csv

    with _session(config_path) as (_settings, store), writing(file):
        console.print(f"{export_csv(store, file):,} subscribers written to {file}")


@subscribers_app.command("list")
def subscribers_list(
    config_path: ConfigOption = Path("digest.toml"),
    status: Annotated[
        str | None, typer.Option(help="Only this status (active, unsubscribed, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
) -> None:
    """Show subscribers and the count per status."""
    from digest.subscribers import STATUSES, display_email

    if status is not None and status not in STATUSES:
        _error(f"--status {status!r} is not one of {', '.join(sorted(STATUSES))}")
        raise typer.Exit(2)
    with _session(config_path) as (_settings, store):
        counts = store.count_subscribers()
        console.print(
            ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "no subscribers"
        )
        for i, s in enumerate(store.iter_subscribers(status)):
            if i >= limit:
                break
            console.print(
                f"{display_email(s.email)}\t{s.name}\t{';'.join(s.sections)}\t{s.status}",
                highlight=False,
                markup=False,
            )


def _address(email: str, option: str = "") -> str:
    """The address as stored, or one line and exit status 2."""
    from email_validator import EmailNotValidError

    from digest.subscribers import normalise_email

    try:
        return normalise_email(email)
    except EmailNotValidError as exc:
        _error(f"{option}{' ' * bool(option)}{email!r} is not an e-mail address: {exc}")
        raise typer.Exit(2) from None


def _at_least(option: str, value: float | None, least: float) -> None:
    """A number option below what it can mean (a send of 0 batches, a poll of -1 s):
    one line and exit status 2, as for a bad --date."""
    if value is not None and value < least:
        _error(f"{option} must be {least:g} or more, not {value:g}")
        raise typer.Exit(2)


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """One subscriber: status, sections, why they are suppressed, and every edition
    sent to them (the batch, its state, the provider's message id)."""
    from digest.subscribers import display_email

    with _session(config_path) as (_settings, store):
        address = _address(email)
        subscriber = store.subscriber(address)
        suppression = store.suppression(address)
        deliveries = store.deliveries_to(address)
        if subscriber is None and suppression is None and not deliveries:
            _error(f"{address} is not a subscriber and was never sent anything")
            raise typer.Exit(1)
        if subscriber is not None:
            sections = ";".join(subscriber.sections) or "(whole edition)"
            console.print(
                f"{display_email(subscriber.email)}  {subscriber.name}  "
                f"status: {subscriber.status}  sections: {sections}",
                markup=False,
            )
            for key, value in subscriber.attributes.items():
                console.print(f"  {key}: {value}", markup=False)
        if suppression is not None:
            source = f" ({suppression.source})" if suppression.source else ""
            console.print(
                f"suppressed: {suppression.reason}{source} since "
                f"{suppression.created_at:%Y-%m-%d %H:%M} UTC; never mailed again",
                markup=False,
            )
        for edition, number, state, updated_at, message_id, error in deliveries:
            what = {"sent": "sent", "sending": "in doubt", "pending": "not sent yet"}.get(
                state, state
            )
            extra = f", message id {message_id}" if message_id and state == "sent" else ""
            refused = f"; {error}" if error and address in error.lower() else ""
            failed = f": {error}" if error and state == "failed" else ""
            console.print(
                f"{edition}: {what} in batch {number}, {updated_at:%Y-%m-%d %H:%M:%S} UTC"
                f"{extra}{failed}{refused}",
                markup=False,
            )
        if not deliveries:
            console.print("no edition has been sent to this address yet")


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str, typer.Option(help="The reader's name.")] = "",
    sections: Annotated[
        str, typer.Option(help="Preferred sections, ;-separated (default: all).")
    ] = "",
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Add one subscriber (an address that left stays unsubscribed)."""

    from digest.models import Subscriber
    from digest.subscribers import parse_sections

    with _session(config_path) as (_settings, store):
        address = _address(email)
        parts = parse_sections(sections)
        added, _updated, kept_out = store.upsert_subscribers([Subscriber(address, name, parts)])
        if kept_out:
            console.print(f"{address} unsubscribed earlier and stays unsubscribed")
        else:
            console.print(f"{address} {'added' if added else 'updated'}")


@subscribers_app.command("remove")
def subscribers_remove(
    email: Annotated[str, typer.Argument(help="The address.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Unsubscribe an address for good (it is kept as a suppression, never mailed again)."""
    with _session(config_path) as (_settings, store):
        address = _address(email)  # as stored: `a@bücher.example` is `a@xn--bcher-kva.example`
        store.suppress(address, "unsubscribed", source="cli")
        console.print(f"{address} unsubscribed")


# -- scheduling (issue 4) -----------------------------------------------------------


@app.command()
def schedule(
    config_path: ConfigOption = Path("digest.toml"),
    next_count: Annotated[
        int | None,
        typer.Option("--next", help="Print the next N fire times of every job and exit."),
    ] = None,
    standby_interval: Annotated[
        float | None,
        typer.Option(
            "--standby-interval",
            help="Seconds within which a standby takes over from an active scheduler that "
            "died (default: cron.yaml's standby_interval, else 30).",
        ),
    ] = None,
) -> None:
    """Run the jobs in cron.yaml on time, in the newsroom's time zone (foreground).

    One `digest schedule` per database is active; any other waits as a standby and
    takes over when the active one stops. SIGTERM or Ctrl-C stops cleanly.
    """
    from datetime import UTC, datetime

    from digest import schedule as scheduling

    if next_count is not None and next_count < 1:
        _error("--next must be 1 or more")
        raise typer.Exit(2)
    with _session(config_path) as (settings, store):
        plan = scheduling.load(settings.cron_file, settings)
        if next_count is not None:
            for line in scheduling.describe_upcoming(plan, next_count, datetime.now(UTC)):
                console.print(line, markup=False)
            return
        scheduling.run(settings, store, plan, standby_interval=standby_interval)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
