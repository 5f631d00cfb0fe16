"""The ledger rides out a database restart, a failover or a long lock.

A managed PostgreSQL fails over in tens of seconds; a restart takes a few; on SQLite
another process can hold the write lock for longer than `busy_timeout` (a big import,
a backup). A ledger write that fails then is the worst kind of failure: the batch
was delivered, and if its "sent" cannot be written it is left in doubt. So every
ledger read and write goes through `Durable`: on an error that says the database is
unreachable, restarting or locked (not on a wrong query) it is tried again, with
backoff and full jitter, on a fresh connection (the engine's pool_pre_ping and
SQLAlchemy's pool invalidation on a disconnect replace the dead ones), for
`[delivery] ledger_retry_seconds` (120 s by default: a failover, with room to spare).
Only then does the send stop, with one line saying how to resume.

Every call retried here is safe to repeat: state changes set a state, snapshots and
claims are found again if their commit went through unanswered (ledger.open_send,
store/events.py claimed_with).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from digest.errors import SendError

log = logging.getLogger("digest.send")

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
D = TypeVar("D")

#: Backoff between tries: a random wait up to base * 2^(try-1), at most `_MAX_DELAY`,
#: so a database back after two seconds is found within about two more.
_BASE_DELAY = 0.1
_MAX_DELAY = 2.0


class DatabaseUnavailable(SendError):
    """The database stayed unreachable for ledger_retry_seconds: the send stops here."""


def is_transient(exc: BaseException) -> bool:
    """Whether an error says the database is away (worth waiting for), not that we erred.

    OperationalError is what the drivers raise for a refused or dropped connection,
    a server shutting down or starting up (PostgreSQL 57P01, 57P03) and SQLite's
    "database is locked"; SQLAlchemy marks any error that cut the connection as
    `connection_invalidated`. A constraint or syntax error is never retried.
    """
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def reason(exc: BaseException) -> str:
    """The driver's first line: 'connection refused', 'database is locked', ...

    Never the URL: drivers do not put the password in their messages, and the
    SQL SQLAlchemy appends is left out.
    """
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    first = lines[0].strip() if lines else type(original).__name__
    return first[:200]


def stopped_message(edition: str, what: str, why: str, seconds: float | None = None) -> str:
    """The one line a send that must stop for the database ends with."""
    how_long = f" for {seconds:g} s" if seconds is not None else ""
    return (
        f"send {edition} stopped: the database was unreachable{how_long} "
        f"({what}: {why}); every batch recorded so far is safe; "
        f"run `digest send {edition} --resume` once it is back"
    )


class Durable:
    """Calls into the store, tried again while the database is away, for `seconds` each."""

    def __init__(
        self,
        edition: str,
        seconds: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.edition = edition
        self.seconds = seconds
        self.sleep = sleep

    def __call__(self, what: str, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """call(*args, **kwargs); `what` says what it does, for the log and the error."""
        started = time.monotonic()
        tries = 0
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                tries += 1
                waited = time.monotonic() - started
                if waited >= self.seconds:
                    raise DatabaseUnavailable(
                        stopped_message(self.edition, what, reason(exc), self.seconds)
                    ) from None
                if tries == 1:
                    log.warning(
                        "send %s: the database is unavailable while %s (%s); "
                        "trying again for up to %g s",
                        self.edition,
                        what,
                        reason(exc),
                        self.seconds,
                    )
                delay = random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2 ** (tries - 1)))
                self.sleep(min(delay, max(0.0, self.seconds - waited)))
                continue
            if tries:
                log.info(
                    "send %s: the database is back after %.1f s; %s done",
                    self.edition,
                    time.monotonic() - started,
                    what,
                )
            return result


def database_errors(
    send: Callable[Concatenate[S, D, str, P], T],
) -> Callable[Concatenate[S, D, str, P], T]:
    """For jobs.send(settings, store, edition, ...): whatever it does outside the ledger's
    retries (loading the edition, its copies) with the database away is one line too,
    never a traceback."""

    @functools.wraps(send)
    def guarded(settings: S, store: D, edition: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return send(settings, store, edition, *args, **kwargs)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            raise DatabaseUnavailable(stopped_message(edition, "preparing", reason(exc))) from None

    return guarded
