"""`digest schedule`: the jobs in cron.yaml run on time, one active scheduler per
database and any others standing by."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import Command, ConfigOption, console, print_error, session

app = typer.Typer()


@app.command(cls=Command)
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
        print_error("--next must be 1 or more")
        raise typer.Exit(2)
    with session(config_path) as (settings, store):
        plan = scheduling.load(settings.cron_file, settings)
        if next_count is not None:
            for line in scheduling.describe_upcoming(plan, next_count, datetime.now(UTC)):
                console.print(line, markup=False)
            return
        scheduling.run(settings, store, plan, standby_interval=standby_interval)
