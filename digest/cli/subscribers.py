"""`digest subscribers import, export, list, show, add, remove`: the list of readers
and the suppressions that keep those who left from ever being mailed again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import (
    Command,
    ConfigOption,
    Group,
    at_least,
    console,
    counted,
    email_address,
    err,
    print_error,
    session,
)

app = typer.Typer(
    cls=Group, help="Import, export, list, add and remove subscribers.", no_args_is_help=True
)


@app.command("import", cls=Command)
def subscribers_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with an email column; name, sections, status optional.")
    ],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Add or update subscribers from a CSV. Never resubscribes anyone who left."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
        session(config_path) as (_settings, store),
        Progress(*columns, console=err.rich, disable=not err.is_terminal) as bar,
    ):
        task = bar.add_task("import", total=size or None, rows="")

        def on_progress(report: ImportReport) -> None:
            bar.update(task, completed=report.bytes_read, rows=counted(report.read, "row"))

        r = import_subscribers(store, file, on_progress=on_progress)
        bar.update(task, completed=size, rows=counted(r.read, "row"))
    console.print(
        f"{counted(r.read, 'row')}: {r.added:,} added, {r.updated:,} updated, "
        f"{len(r.rejected):,} rejected, {counted(r.duplicates, 'duplicate')}, "
        f"{r.kept_out:,} had left and stay unsubscribed"
    )


@app.command("export", cls=Command)
def subscribers_export(
    file: Annotated[Path, typer.Argument(help="Where to write the CSV.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Write every subscriber to a CSV that is safe to open in a spreadsheet."""
    from digest.environment import writing
    from digest.subscribers import export_csv

    with session(config_path) as (_settings, store), writing(file):
        written = counted(export_csv(store, file), "subscriber")
        console.print(f"{written} written to {file}")


@app.command("list", cls=Command)
def subscribers_list(
    config_path: ConfigOption = Path("digest.toml"),
    status: Annotated[
        str | None, typer.Option(help="Only this status (active, unsubscribed, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many; 0 shows them all.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many first (in address order).")] = 0,
) -> None:
    """Show subscribers as a table, in address order, and the count per status."""
    from itertools import islice

    from rich.table import Table

    from digest.subscribers import STATUSES, display_email

    if status is not None and status not in STATUSES:
        print_error(f"--status {status!r} is not one of {', '.join(sorted(STATUSES))}")
        raise typer.Exit(2)
    at_least("--limit", limit, 0)
    at_least("--offset", offset, 0)
    with session(config_path) as (_settings, store):
        counts = store.subscribers.count_subscribers()
        console.print(
            ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "no subscribers",
            highlight=False,
        )
        total = counts.get(status, 0) if status else sum(counts.values())
        rows = islice(
            store.subscribers.iter_subscribers(status), offset, offset + limit if limit else None
        )
        table = Table("Email", "Name", "Sections", "Status", box=None, highlight=False)
        for s in rows:
            table.add_row(display_email(s.email), s.name, "; ".join(s.sections), s.status)
        if table.row_count:
            console.print(table)
        # Never a silent stop: say what was shown of how many, and how to see more.
        shown = f"{offset + 1:,}–{offset + table.row_count:,}" if table.row_count else "none"
        more = offset + table.row_count < total
        noun = f"{status} subscriber" if status else "subscriber"
        console.print(
            f"showing {shown} of {counted(total, noun)}"
            + (f"; --offset {offset + table.row_count} for more" if more else ""),
            highlight=False,
            markup=False,
        )


@app.command("show", cls=Command)
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """One subscriber: status, sections, why they are suppressed, and every edition
    sent to them (the batch, its state, the provider's message id)."""
    from digest.subscribers import display_email

    with session(config_path) as (_settings, store):
        address = email_address(email)
        subscriber = store.subscribers.subscriber(address)
        suppression = store.subscribers.suppression(address)
        deliveries = store.subscribers.deliveries_to(address)
        if subscriber is None and suppression is None and not deliveries:
            print_error(f"{address} is not a subscriber and was never sent anything")
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


@app.command("add", cls=Command)
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

    with session(config_path) as (_settings, store):
        address = email_address(email)
        parts = parse_sections(sections)
        added, _updated, kept_out = store.subscribers.upsert_subscribers(
            [Subscriber(address, name, parts)]
        )
        if kept_out:
            console.print(f"{address} unsubscribed earlier and stays unsubscribed")
        else:
            console.print(f"{address} {'added' if added else 'updated'}")


@app.command("remove", cls=Command)
def subscribers_remove(
    email: Annotated[str, typer.Argument(help="The address.")],
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Unsubscribe an address for good (it is kept as a suppression, never mailed again)."""
    with session(config_path) as (_settings, store):
        address = email_address(email)  # as stored: `a@bücher.example` is `a@xn--bcher-kva.example`
        store.subscribers.suppress(address, "unsubscribed", source="cli")
        console.print(f"{address} unsubscribed")
