"""`digest report EDITION`: what readers did with a sent edition (digest.readership
counts it; docs/reports.md says what each number means)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import Command, ConfigOption, console, print_error, session

app = typer.Typer()


def _shown(value: int | None, of: int | None = None) -> str:
    if value is None:
        return "unknown (no provider events)"
    if of:
        return f"{value:,} ({value / of:.1%})"
    return f"{value:,}"


@app.command(cls=Command)
def report(
    edition: Annotated[str, typer.Argument(help="The edition's date, YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """What readers did with a sent edition: delivered, bounced, complaints, unsubscribes,
    opens (machine opens apart), clicks and click rate, clicks per story, and the trend."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", edition):
        print_error(f"EDITION {edition[:40]!r} is not a date; give it as YYYY-MM-DD")
        raise typer.Exit(2)
    from digest import readership

    with session(config_path) as (_settings, store):
        figures = readership.report(store, edition)
    if figures is None:
        print_error(f"edition {edition} has not been sent: there is no report until it is")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(figures.as_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    f = figures
    console.print(f"Edition {f.edition} · sent by {f.backend} · send {f.send_state}", markup=False)
    lines = [
        ("recipients", f"{f.recipients:,} ({f.sent:,} sent)"),
        ("delivered", _shown(f.delivered, f.sent)),
        ("bounced", _shown(f.bounced)),
        ("blocked (temporary)", _shown(f.blocked)),
        ("complaints", _shown(f.complaints)),
        (
            "unsubscribes",
            f"{f.unsubscribes_own_link + f.unsubscribes_provider:,} "
            f"({f.unsubscribes_own_link:,} through the digest's own link)",
        ),
        ("unique opens", _shown(f.unique_opens, f.delivered)),
        ("machine opens (apart)", _shown(f.machine_opens)),
        ("unique clicks", f"{f.unique_clicks:,}"),
        ("click rate", "—" if f.click_rate is None else f"{f.click_rate:.1%} of {f.click_base:,}"),
    ]
    if f.anonymous_clicks:
        lines.append(("clicks without a reader", f"{f.anonymous_clicks:,} (first-party)"))
    for name, value in lines:
        console.print(f"  {name:<24}{value}", markup=False)
    if f.unique_opens is not None:
        console.print(
            "  Opens are a floor and a guess: see docs/reports.md (Apple Mail Privacy Protection).",
            markup=False,
        )
    if f.places:
        table = Table(title="Clicks per story (once per reader per link)")
        for column in ("place", "clicks", "story"):
            table.add_column(column)
        for place in f.places:
            table.add_row(place.label, f"{place.clicks:,}", place.title)
        console.print(table)
        console.print(f"  {f.lead_against_rest}", markup=False)
    if f.subjects:
        console.print("Subject test (unique click rate of each share of the test group):",
                      markup=False)  # fmt: skip
        for figure in f.subjects:
            rate = "—" if figure.click_rate is None else f"{figure.click_rate:.1%}"
            mark = "  ← sent to the rest" if figure.winner else ""
            console.print(
                f"  {figure.number}. {figure.subject!r}: {figure.clicked:,} of "
                f"{figure.readers:,} clicked ({rate}){mark}",
                markup=False,
            )
        console.print(f"  {f.subject_decision}", markup=False)
    if f.trend:
        console.print("Trend (click rate, oldest first):", markup=False)
        for point in f.trend:
            rate = "—" if point.click_rate is None else f"{point.click_rate:.1%}"
            console.print(f"  {point.edition}  {rate:>7}  of {point.recipients:,}", markup=False)
