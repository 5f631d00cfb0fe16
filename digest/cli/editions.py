"""`digest run, collect, draft, edit, approve, render`: stories and editions, from the
newsroom's sources to a rendered edition an editor has steered and approved."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from digest.cli.base import (
    AllowClippedOption,
    Command,
    ConfigOption,
    DateOption,
    console,
    counted,
    local_day,
    print_error,
    session,
    shown,
)
from digest.cli.sending import print_send, stop_on_signal

if TYPE_CHECKING:  # each command imports what it runs: a fast `digest --help`
    from digest import editor

app = typer.Typer()


@app.command(cls=Command)
def run(
    config_path: ConfigOption = Path("digest.toml"),
    day: DateOption = None,
    allow_clipped: AllowClippedOption = False,
) -> None:
    """Collect, draft, render and send today's edition (the morning job)."""
    from digest import jobs

    with session(config_path) as (settings, store):
        edition_day = local_day(settings, day)
        from digest.cli.progress import progress

        with stop_on_signal() as stop, progress() as bars:
            summary = jobs.run(
                settings, store, edition_day, allow_clipped=allow_clipped, watch=bars.watch(stop)
            )
        c = summary.collected
        console.print(
            f"[bold]Edition {summary.edition.name}[/bold]: {summary.edition.subject}",
            highlight=False,
        )
        console.print(
            f"collected: {c.new} new, {counted(c.updated, 'updated story', 'updated stories')}; "
            f"{counted(c.pageview_rows, 'page-view row')}"
            + (f"; {counted(len(c.failed_sources), 'source')} failed" if c.failed_sources else "")
        )
        if summary.subscribers:
            s = summary.subscribers
            console.print(
                f"subscribers: {counted(s.read, 'row')} read, {s.added} added, "
                f"{s.updated} updated, {len(s.rejected)} rejected, "
                f"{counted(s.duplicates, 'duplicate')}, "
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
        print_send(summary.send, settings.delivery)
        console.print(f"html: {shown(summary.html_path)}")
        console.print(f"text: {shown(summary.text_path)}")
        if summary.outbox:
            console.print(f"outbox: {shown(summary.outbox)}")
        if summary.send.state not in ("done",):
            raise typer.Exit(1)


@app.command(cls=Command)
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
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Read every source whole, even one that answers it has not changed since "
            "the last collect (after an upgrade that reads more of each story, say).",
        ),
    ] = False,
) -> None:
    """Read the newsroom's sources (feeds, CMS, article pages, page-view exports) into the
    store. Naming any source with --source, --page or --cms reads only those."""
    from digest import jobs
    from digest.cli.progress import progress

    with session(config_path) as (settings, store):
        with progress() as bars:
            result = jobs.collect(
                settings, store, source, pages=page, cms=cms, on_source=bars.on_source, full=full
            )
        console.print(
            f"{counted(result.new, 'new story', 'new stories')}, {result.updated} updated, "
            f"{counted(result.pageview_rows, 'page-view row')}"
            + (
                f"; {counted(len(result.unchanged_sources), 'source')} unchanged since the "
                "last collect"
                if result.unchanged_sources
                else ""
            )
        )
        if result.failed_sources:
            failed = counted(len(result.failed_sources), "source")
            console.print(f"[red]{failed} could not be read[/red]")
            raise typer.Exit(1)


@app.command(cls=Command)
def draft(
    config_path: ConfigOption = Path("digest.toml"),
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the edition as JSON.")] = False,
) -> None:
    """Rank the stories into the day's draft and show why each story is where it is."""
    from digest import jobs
    from digest.cli.edition_view import edition_json, print_edition

    with session(config_path) as (settings, store):
        edition = jobs.draft(settings, store, local_day(settings, day))
        if as_json:
            sys.stdout.write(json.dumps(edition_json(edition), indent=2, ensure_ascii=False) + "\n")
        else:
            print_edition(edition)


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


def _set_subject_test(store: Any, name: str, subjects: list[str], share: float) -> None:
    from digest.send.subjects import set_test

    test = set_test(store, name, subjects, share)
    if test is None:
        console.print(f"[green]✓[/green] edition {name}: no subject test", highlight=False)
        return
    listed = "; ".join(f"{i}. {s}" for i, s in enumerate(test.subjects, 1))
    console.print(
        f"[green]✓[/green] edition {name}: subject test of {escape(listed)}, each to an equal "
        f"share of {test.share:.0%} of the list; the rest get the one clicked most",
        highlight=False,
    )


def _read_note(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print_error(f"--note-file {path}: {why}")
        raise typer.Exit(2) from None


@app.command(cls=Command)
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
    note: Annotated[
        str | None,
        typer.Option(
            help="The note to readers under the greeting: plain text, a blank line between "
            'paragraphs, links as https://... or [words](https://...) ("" = no note).'
        ),
    ] = None,
    note_file: Annotated[
        Path | None,
        typer.Option("--note-file", help="Read the note from this file (- = standard input)."),
    ] = None,
    relate: Annotated[
        StoryRefs, typer.Option(help="List this story under the lead's Related (any stored story).")
    ] = None,
    unrelate: Annotated[
        StoryRefs, typer.Option(help="Keep this story out of every Related list.")
    ] = None,
    subject_test: Annotated[
        list[str] | None,
        typer.Option(
            "--subject-test",
            help="Test this subject against the others given (2 or 3, one option each): "
            "the send mails each to a share of [subject_tests] and the rest the one "
            "clicked most.",
        ),
    ] = None,
    no_subject_test: Annotated[
        bool, typer.Option("--no-subject-test", help="Drop the edition's subject test.")
    ] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Undo every editor change.")] = False,
    by: ByOption = None,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Steer a draft: lead, pin, drop, reorder, related, subject, note. With no change,
    show the draft, why each other story of the window is left out and what editors changed.

    A story is named by its URL or by a word or phrase of its headline or URL that no
    other story of the window shares. Changes apply in this order: reset, restore,
    drop, unpin, lead, pin, up, down, unrelate, relate, subject, note; they are kept when
    a later collect ranks the edition again. Changing an approved edition withdraws the
    approval.
    """
    from digest import editor

    changes: list[editor.Change] = [editor.Change("reset")] if reset else []
    for action, refs in (
        ("restore", restore),
        ("drop", drop),
        ("unpin", unpin),
        ("lead", [lead] if lead else None),
        ("pin", pin),
        ("up", up),
        ("down", down),
        ("unrelate", unrelate),
        ("relate", relate),
        ("subject", None if subject is None else [subject]),
        ("note", None if note is None else [note]),
        ("note", None if note_file is None else [_read_note(note_file)]),
    ):
        changes += [editor.Change(action, ref) for ref in refs or []]  # type: ignore[arg-type]
    from digest.cli.edition_view import print_editor_view

    with session(config_path) as (settings, store):
        name = local_day(settings, edition, upcoming=True).isoformat()
        editor.draft_if_missing(settings, store, name)
        result = editor.edit(settings, store, name, changes, _who(by))
        for action in result.actions:
            console.print(f"[green]✓[/green] {escape(action)}", highlight=False)
        if subject_test or no_subject_test:
            _set_subject_test(store, name, subject_test or [], settings.subject_tests.share)
        print_editor_view(editor.view(settings, store, name))


@app.command(cls=Command)
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
    from digest import editor

    with session(config_path) as (settings, store):
        name = local_day(settings, edition, upcoming=True).isoformat()
        if withdraw:
            editor.withdraw(store, name, _who(by))
            console.print(f"Edition {name} is a draft again.")
            return
        approved = editor.approve(settings, store, name, _who(by))
        console.print(f"[green]✓[/green] Edition {name} approved: {approved.subject}")


@app.command(cls=Command)
def render(
    edition: Annotated[str, typer.Argument(help="The edition's date, YYYY-MM-DD.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for EDITION.html and EDITION.txt.")
    ] = Path("out"),
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Render an edition to HTML and text files, as a reader would see it."""
    from digest import jobs

    with session(config_path) as (settings, store):
        rendered = jobs.render_edition(settings, store, edition)
        html_path, text_path = jobs.write_edition(settings, rendered, out)
        console.print(f"html: {html_path} ({len(rendered.html.encode()) // 1024} KB)")
        console.print(f"text: {text_path}")
