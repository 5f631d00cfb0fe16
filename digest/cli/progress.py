"""Progress on stderr for the commands that take a while: collect, send, and `digest run`,
which does both under one display (rich shows one live display at a time).

Only on a terminal: a command run by cron or piped to a file prints its summary and its
error lines, nothing that redraws itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from digest.cli.base import err
from digest.jobs import Watch
from digest.send.ledger import SendReport


class Bars:
    """One display, a line per stage as it starts: "collecting" (sources), "sending"
    (recipients, with the rate)."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._collect: TaskID | None = None
        self._send: TaskID | None = None

    def watch(self, stop: threading.Event) -> Watch:
        """The job's Watch: these bars, and the shell's stop."""
        return Watch(
            on_source=self.on_source,
            on_start=self.on_start,
            on_progress=self.on_progress,
            stop=stop,
        )

    def on_source(self, done: int, total: int, name: str) -> None:
        """`collect_all`'s on_source."""
        if self._collect is None:
            self._collect = self._bar.add_task("[bold]collecting[/bold]", total=total, detail="")
        # A long URL would push the bar off the line: the source's last 40 characters.
        shown = name if len(name) <= 40 else "…" + name[-39:]
        self._bar.update(self._collect, total=total, completed=done, detail=shown)

    def on_start(self, before: SendReport) -> None:
        """The send's on_start: how many recipients, how many already sent."""
        if self._send is None:
            self._send = self._bar.add_task("[bold]sending[/bold]", total=None, detail="")
        self._bar.update(self._send, total=before.recipients, completed=before.sent)

    def on_progress(self, count: int) -> None:
        """The send's on_progress: `count` more recipients sent."""
        if self._send is None:
            self._send = self._bar.add_task("[bold]sending[/bold]", total=None, detail="")
        self._bar.advance(self._send, count)
        speed = next(t.speed for t in self._bar.tasks if t.id == self._send)
        if speed:
            self._bar.update(self._send, detail=f"{speed:,.0f}/s")


@contextmanager
def progress() -> Iterator[Bars]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    terminal = err.rich  # type: ignore[attr-defined]  # the Console itself (cli.base)
    with Progress(*columns, console=terminal, disable=not terminal.is_terminal) as bar:
        yield Bars(bar)
