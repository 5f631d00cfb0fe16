"""`digest ...`: the command line. A thin shell over digest.jobs; no logic of its own.

One module per command group, each with its own `typer.Typer`, assembled here in the
order `digest --help` lists them:

- `editions`: run, collect, draft, edit, approve, render (stories and editions)
- `sending`: send, sends, worker
- `web`: web
- `schedule`: schedule
- `subscribers`: the `digest subscribers ...` group
- `base`: what they share (consoles, the `error:` line, common options, the session)

Heavy imports (collectors, the PostgreSQL dialect, uvicorn) stay inside the commands
that use them, so that `digest --help` and every other command start fast.
"""

from __future__ import annotations

import typer

from digest.cli import editions, schedule, sending, subscribers, web

app = typer.Typer(
    help="The daily news digest: collect stories, rank them, render the email, send it once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Without a name, a group's commands join `digest` itself (`digest send`, not
# `digest sending send`).
app.add_typer(editions.app)
app.add_typer(sending.app)
app.add_typer(web.app)
app.add_typer(schedule.app)
app.add_typer(subscribers.app, name="subscribers")


def main() -> None:
    app()
