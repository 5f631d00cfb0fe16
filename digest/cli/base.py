"""What every command group shares: the two consoles (stdout, and stderr for errors and
progress), the one `error:` line, the options several commands take, and the session
that loads the settings and opens the store for a command."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from digest.errors import DigestError

if TYPE_CHECKING:
    # Imported by the commands that need them, not here: `digest --help` and every
    # command's start-up would otherwise pay for SQLAlchemy and the whole pipeline
    # (tests/test_cli_startup.py).
    from rich.console import Console

    from digest import config
    from digest.store import Store


class _Console:
    """A rich Console, made when a command first prints: importing rich's console
    (about 40 modules) is a fifth of what `digest --help` would load. `.rich` is the
    Console itself, for what takes one (a Progress)."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    @functools.cached_property
    def rich(self) -> Console:
        from rich.console import Console

        return Console(**self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich, name)


# soft_wrap: a path or an error stays on one line, whatever the terminal width.
console: Console = _Console(soft_wrap=True, highlight=False)  # type: ignore[assignment]
err: Console = _Console(stderr=True, soft_wrap=True, highlight=False)  # type: ignore[assignment]


class _FlagsTakeNoValue:
    """Help that shows a flag as what it is: `--json` alone. Typer writes `<bool>` beside
    every flag (`--json <bool>`), as if it wanted `--json true`; an empty metavar is
    what typer prints instead of the type."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params


class _PlainHelp:
    """Help and usage errors in plain text, as click writes them. Typer's rich panels
    import rich's Markdown, markdown-it and rich's tracebacks on every `--help`, which
    made it take about twice as long (docs/benchmarks.md); the words are the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None


class Command(_FlagsTakeNoValue, _PlainHelp, TyperCommand):
    """Every `digest` command: `@app.command(cls=Command)`."""


class Group(_FlagsTakeNoValue, _PlainHelp, TyperGroup):
    """`digest` and `digest subscribers`: `typer.Typer(cls=Group)`."""


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
    """`warning: <file>: line 7: ...`: one line per problem, never wrapped. Every problem
    line starts with `error:` or `warning:`, whatever the level's name (a CRITICAL is
    an error to an operator)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " ")
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("digest")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count that agrees with its noun: `1 source`, `2 sources`, `1,200 recipients`."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def shown(path: Path) -> str:
    """A path as an operator reads it: relative to where they are when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def print_error(message: str) -> None:
    """One line on stderr. Plain text: our messages hold [sections] that are not markup."""
    sys.stderr.write(f"error: {message}\n")


@contextmanager
def session(config_path: Path) -> Iterator[tuple[config.Settings, Store]]:
    """Load settings and open the store; turn our errors, and a database that stops
    answering part-way, into one line and an exit status."""
    from digest import config, environment, jobs

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
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except environment.DATABASE_LOST as exc:
        if settings is None:
            raise
        print_error(str(environment.lost_database(settings, exc)))
        raise typer.Exit(2) from None


def local_day(settings: config.Settings, value: str | None, *, upcoming: bool = False) -> date:
    from digest import jobs

    if value is None:
        return jobs.upcoming(settings) if upcoming else jobs.today(settings)
    try:
        return date.fromisoformat(value)
    except ValueError:
        print_error(f"{value!r} is not a date; give it as YYYY-MM-DD")
        raise typer.Exit(2) from None


def email_address(email: str, option: str = "") -> str:
    """The address as stored, or one line and exit status 2."""
    from email_validator import EmailNotValidError

    from digest.subscribers import normalise_email

    try:
        return normalise_email(email)
    except EmailNotValidError as exc:
        print_error(f"{option}{' ' * bool(option)}{email!r} is not an e-mail address: {exc}")
        raise typer.Exit(2) from None


def at_least(option: str, value: float | None, least: float) -> None:
    """A number option below what it can mean (a send of 0 batches, a poll of -1 s):
    one line and exit status 2, as for a bad --date."""
    if value is not None and value < least:
        print_error(f"{option} must be {least:g} or more, not {value:g}")
        raise typer.Exit(2)
