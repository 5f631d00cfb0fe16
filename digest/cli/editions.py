"""`digest run, collect, draft, edit, approve, render`: stories and editions, from the
newsroom's sources to a rendered edition an editor has steered and approved."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from digest import editor, jobs
from digest.cli.base import (
    AllowClippedOption,
    Command,
    ConfigOption,
    DateOption,
    console,
    counted,
    local_day,
    session,
    shown,
)
from digest.cli.sending import print_send, send_progress, stop_on_signal
from digest.models import Edition, Pick

app = typer.Typer()


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
        "related": [pick(p) | {"under": p.under} for p in edition.related],
    }


def _print_edition(edition: Edition) -> None:
    console.print(f"[bold]Edition {edition.name}[/bold]  ({edition.status})")
    console.print(f"Subject: {edition.subject}", highlight=False, markup=False)
    for title, picks in (
        ("Lead", [edition.lead] if edition.lead else []),
        ("Related", edition.related),
        ("More in News", edition.more),
        ("Most Read", edition.most_read),
    ):
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("#", "headline", "section", "score", "why", "views"):
            table.add_column(column)
        for p in picks:
            table.add_row(*_pick_row(p))
        if not picks:
            note = {
                "Most Read": "no page-view data for this window",
                "Related": "no story alike enough",
            }.get(title, "no stories")
            table.add_row("", f"(left out: {note})", "", "", "", "")
        console.print(table)


@app.command(cls=Command)
def run(
    config_path: ConfigOption = Path("digest.toml"),
    day: DateOption = None,
    allow_clipped: AllowClippedOption = False,
) -> None:
    """Collect, draft, render and send today's edition (the morning job)."""
    with session(config_path) as (settings, store):
        edition_day = local_day(settings, day)
        with stop_on_signal() as stop, send_progress() as (on_start, on_progress):
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
) -> None:
    """Read the newsroom's sources (feeds, CMS, article pages, page-view exports) into the
    store. Naming any source with --source, --page or --cms reads only those."""
    with session(config_path) as (settings, store):
        result = jobs.collect(settings, store, source, pages=page, cms=cms)
        console.print(
            f"{counted(result.new, 'new story', 'new stories')}, {result.updated} updated, "
            f"{counted(result.pageview_rows, 'page-view row')}"
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
    with session(config_path) as (settings, store):
        edition = jobs.draft(settings, store, local_day(settings, day))
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
    relate: Annotated[
        StoryRefs, typer.Option(help="List this story under the lead's Related (any stored story).")
    ] = None,
    unrelate: Annotated[
        StoryRefs, typer.Option(help="Keep this story out of every Related list.")
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Undo every editor change.")] = False,
    by: ByOption = None,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """Steer a draft: lead, pin, drop, reorder, related, subject. With no change, show
    the draft, the other stories of the window and what editors changed.

    A story is named by its URL or by a word or phrase of its headline or URL that no
    other story of the window shares. Changes apply in this order: reset, restore,
    drop, unpin, lead, pin, up, down, unrelate, relate, subject; they are kept when a
    later collect ranks the edition again. Changing an approved edition withdraws the approval.
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
        ("unrelate", unrelate),
        ("relate", relate),
        ("subject", None if subject is None else [subject]),
    ):
        changes += [editor.Change(action, ref) for ref in refs or []]  # type: ignore[arg-type]
    with session(config_path) as (settings, store):
        name = local_day(settings, edition, upcoming=True).isoformat()
        editor.draft_if_missing(settings, store, name)
        result = editor.edit(settings, store, name, changes, _who(by))
        for action in result.actions:
            console.print(f"[green]✓[/green] {action}", highlight=False)
        _print_editor_view(editor.view(settings, store, name))


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
    with session(config_path) as (settings, store):
        rendered = jobs.render_edition(settings, store, edition)
        html_path, text_path = jobs.write_edition(settings, rendered, out)
        console.print(f"html: {html_path} ({len(rendered.html.encode()) // 1024} KB)")
        console.print(f"text: {text_path}")
