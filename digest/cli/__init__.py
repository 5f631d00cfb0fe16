"""`digest ...`: the command line. A thin shell over digest.jobs; no logic of its own.

One module per command group, each with its own `typer.Typer`, assembled here in the
order `digest --help` lists them:

- `editions`: run, collect, draft, edit, approve, render (stories and editions)
- `related`: related (the related stories of any stored story)
- `sending`: send, sends, worker
- `reports`: report (what readers did with a sent edition)
- `web`: web
- `schedule`: schedule
- `subscribers`: the `digest subscribers ...` group
- `base`: what they share (consoles, the `error:` line, common options, the session)
- `progress`: the progress display of collect, send and run

Heavy imports (collectors, the PostgreSQL dialect, uvicorn) stay inside the commands
that use them, so that `digest --help` and every other command start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from digest.cli import editions, related, reports, schedule, sending, subscribers, web
from digest.cli.base import Group, console, err

app = typer.Typer(
    cls=Group,
    help="The daily news digest: collect stories, rank them, render the email, send it once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Without a name, a group's commands join `digest` itself (`digest send`, not
# `digest sending send`).
app.add_typer(editions.app)
app.add_typer(related.app)
app.add_typer(sending.app)
app.add_typer(reports.app)
app.add_typer(web.app)
app.add_typer(schedule.app)
app.add_typer(subscribers.app, name="subscribers")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version as installed_version

        console.print(f"digest {installed_version('digest')}", markup=False)
        raise typer.Exit()


@app.callback()
def _digest(
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The newsroom's settings file: the same as --config after the command "
            "(which wins if both are given).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    # Every command reads its own --config, which falls back on DIGEST_CONFIG; setting
    # that here, before click parses the command, gives `digest -c x.toml draft` the
    # order an operator expects: --config after the command, then before it, then the
    # environment, then digest.toml.
    if config_path is not None:
        os.environ["DIGEST_CONFIG"] = str(config_path)


def _click_exceptions() -> Any:
    """click's exceptions: typer 0.29 and later carry their own copy of click."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer before 0.29 runs on click itself
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def main() -> None:
    """Run `digest`. A usage mistake (an unknown command or option, a missing argument) is
    one `error:` line on stderr and exit status 2, as every other error is, where click
    would print the usage and the message in a frame."""
    click = _click_exceptions()
    try:
        result = app(prog_name="digest", standalone_mode=False)
    except click.NoArgsIsHelpError as asked:  # `digest subscribers`: the group's help
        console.print(asked.ctx.get_help(), markup=False)
        sys.exit(0)
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else "digest"
        err.print(
            f"error: {error.format_message().rstrip('.')} (see '{where} --help')", markup=False
        )
        sys.exit(2)
    except click.ClickException as error:
        err.print(f"error: {error.format_message()}", markup=False)
        sys.exit(error.exit_code)
    except typer.Abort:
        err.print("error: stopped", markup=False)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
