"""Where the settings meet the machine: the database they name and the folders they name.

Each way that can fail (a URL that does not parse, a database that does not answer,
a folder that cannot be written) becomes one ConfigError line naming the setting
it came from and what to do, never a traceback; and before a send records anything,
so a wrong setting cannot leave an edition half sent or in doubt. Secrets stay out
of every message: a database URL is shown with its password masked.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from digest.config import Settings
from digest.errors import ConfigError, InputError
from digest.store import Store

if TYPE_CHECKING:
    from digest.subscribers import ImportReport


def masked_url(url: str) -> str:
    """The database URL with its password as ***, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not a URL SQLAlchemy can read; still mask "user:password@" as a person wrote it.
        head, at, host = url.rpartition("@")
        if not at:
            return url
        scheme, slashes, credentials = head.rpartition("//")
        user, colon, _password = credentials.partition(":")
        return f"{scheme}{slashes}{user}{colon and ':***'}@{host}"
    if "password" in parsed.query:  # libpq also takes ?password=...
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def database_setting(settings: Settings) -> str:
    """Which setting named the database: what the operator has to change."""
    if settings.env.get("DIGEST_DATABASE_URL"):
        return "DIGEST_DATABASE_URL"
    if settings.database_url == f"sqlite:///{settings.data_dir / 'digest.db'}":
        return f"{settings.path}: [storage] data_dir"
    return f"{settings.path}: [storage] database_url"


def _one_line(exc: BaseException) -> str:
    """The driver's own words (psycopg's, sqlite3's), on one line and without the SQL
    SQLAlchemy appends: that can hold a subscriber's address."""
    cause = getattr(exc, "orig", None) or exc
    return " ".join(str(cause).split()) or type(cause).__name__


def open_store(settings: Settings) -> Store:
    """Store.open, with every way it can fail as one line naming the setting."""
    url = settings.database_url
    setting = database_setting(settings)
    shown = masked_url(url)
    if url.startswith("sqlite:///") and setting.endswith("data_dir"):
        writable_folder(settings.data_dir, setting)
    try:
        return Store.open(url)
    except ArgumentError:  # includes NoSuchModuleError: an unknown dialect
        raise ConfigError(
            f"{setting} {shown!r} is not a database URL digest can use; write "
            "postgresql+psycopg://user@host/dbname or sqlite:////path/to/digest.db"
        ) from None
    except ImportError as exc:  # a dialect whose driver is not installed (psycopg2, MySQLdb)
        raise ConfigError(
            f"{setting} {shown!r}: its driver is not installed ({exc}); digest works with "
            "postgresql+psycopg://user@host/dbname or sqlite:////path/to/digest.db"
        ) from None
    except OSError as exc:  # SQLite's folder could not be made
        raise ConfigError(
            f"{setting} {shown!r}: cannot create {exc.filename or 'its folder'} "
            f"({problem(exc)}); make it writable or name another database"
        ) from None
    except DBAPIError as exc:
        hint = (
            "check that the file and its folder can be read and written"
            if url.startswith("sqlite")
            else "check that it is running and reachable and that the URL's host, port, "
            "database name, user and password are right"
        )
        raise ConfigError(
            f"{setting} {shown}: cannot open the database: {_one_line(exc)}; {hint}"
        ) from None
    except Exception as exc:
        # Alembic's CommandError: a schema revision this digest does not know, i.e. a
        # newer digest has upgraded the database.
        if type(exc).__module__.startswith("alembic"):
            raise ConfigError(
                f"{setting} {shown}: the database's schema is not one this digest knows "
                f"({exc}); upgrade digest to the version that last migrated it"
            ) from None
        raise


#: What SQLAlchemy raises when the database stops answering (a restart, a failover, a
#: dropped connection, SQLite's lock held too long).
DATABASE_LOST = (OperationalError, InterfaceError)


def lost_database(settings: Settings, exc: BaseException) -> ConfigError:
    """The database stopped answering part-way through a command: one line to say so."""
    return ConfigError(
        f"the database ({masked_url(settings.database_url)}) stopped answering: "
        f"{_one_line(exc)}; run the command again once it is back (`digest sends` shows "
        "where a send stopped; `digest send EDITION --resume` finishes it)"
    )


#: What a failed mkdir or write means, in an operator's words.
_PROBLEMS = {
    errno.ENOTDIR: "a file is in the way where a folder should be",
    errno.EEXIST: "it is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.ENOENT: "no such folder",
}


def problem(exc: OSError) -> str:
    return _PROBLEMS.get(exc.errno or 0, exc.strerror or str(exc))


@contextmanager
def writing(path: Path, named_by: str = "") -> Iterator[None]:
    """Writing into path (a folder or a file named by an option or setting): a failure is
    one line naming it, not a traceback."""
    try:
        yield
    except OSError as exc:
        which = f" {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        raise ConfigError(
            f"{named_by}{' ' * bool(named_by)}{path}: cannot write{which or ' it'} "
            f"({problem(exc)}); make it writable or name another"
        ) from None


def writable_folder(path: Path, setting: str) -> Path:
    """The folder, created if need be, that we can write into; else a ConfigError
    naming the setting (or option) that named it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise FileExistsError(errno.EEXIST, "exists", str(path))
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "denied", str(path))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise ConfigError(
            f"{setting} {path}: cannot write there{where}: {problem(exc)}; "
            "make it a writable folder or name another"
        ) from None
    return path


def subscribers_file(settings: Settings) -> Path | None:
    """The newsroom's list to import before a send, or None.

    A list named in [delivery] subscribers_file must be there: one that went missing (a
    move, a typo) would otherwise send to nobody, which burns the edition, or to whoever
    an earlier import left, without a word. With none named, subscribers.csv beside
    digest.toml is imported when there is one; otherwise the list lives in the database
    (`digest subscribers import`).
    """
    named = settings.delivery.subscribers_file
    if named is None:
        beside = settings.path.parent / "subscribers.csv"
        return beside if beside.is_file() else None
    if not named.is_file():
        what = "is a folder, not a CSV file" if named.is_dir() else "no such file"
        raise ConfigError(
            f"{settings.path}: [delivery] subscribers_file {named}: {what}; nothing was "
            "sent. Put the newsroom's list there, or correct the setting (leave it out to "
            "keep the list only in the database: `digest subscribers import FILE`)"
        )
    return named


def import_subscribers(
    store: Store, path: Path, on_progress: Callable[[ImportReport], None] | None = None
) -> ImportReport:
    """subscribers.import_csv, with a file that is not UTF-8 as one line on how to save it."""
    from digest.subscribers import import_csv

    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise ConfigError(f"{path}: {what}; give the path of a CSV with an email column")
    try:
        return import_csv(store, path, on_progress=on_progress)
    except UnicodeDecodeError:
        raise InputError(
            f"{path}: not UTF-8 text; save it as CSV UTF-8 (a spreadsheet's "
            '"CSV UTF-8" format) and import it again'
        ) from None


def ready_to_send(settings: Settings, backend: str) -> None:
    """What a send needs from the machine, checked before it records anything: the
    outbox folder (one that cannot be written would fail the first batch mid-delivery
    and leave it in doubt) and the signing key every unsubscribe link carries."""
    if backend == "outbox":
        writable_folder(settings.delivery.outbox_dir, f"{settings.path}: [delivery] outbox_dir")
    if not settings.secret_key:
        raise ConfigError(
            f"{settings.path}: [storage] data_dir {settings.data_dir}: secret.key is empty; "
            "set DIGEST_SECRET_KEY, or put back the key the readers' links were signed with"
        )


def check_listen(host: str, port: int) -> None:
    """Can `digest web` listen here? Asked before the server starts, so a port in use
    or a host that does not resolve is one line, not the server's start-up log."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number (1 to 65535)")
    # IPv4 unless the host is an IPv6 address: a name such as localhost may resolve to ::1
    # first on a machine without IPv6, and the probe must not refuse what can be served.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        addresses = socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: no such address ({exc.strerror})") from None
    _family, kind, proto, _name, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else problem(exc)
            raise ConfigError(
                f"--host {host} --port {port}: cannot listen there ({why}); "
                "choose another port, or stop what is using it"
            ) from None
