"""Settings: digest.toml plus the environment.

Relative paths in digest.toml are resolved against the folder the file is in,
so `digest --config /srv/newsroom/digest.toml run` works from anywhere.
Secrets never live in the file: they come from the environment only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest import locale
from digest.config_values import (
    HEX_COLOUR as _HEX_COLOUR,
    REQUIRED as _REQUIRED,
    env_float as _env_float,
    env_port as _env_port,
    get as _get,
    is_picture_file,  # noqa: F401 (digest.media's)
    logo as _logo,
    positive as _positive,
    resolve as _resolve,
    resolve_source as _resolve_source,
    section as _section,
    str_list as _str_list,
    suggestion as _suggestion,
)
from digest.errors import ConfigError
from digest.related_settings import RelatedSettings, related_settings
from digest.subject_settings import SubjectTestSettings, subject_test_settings

PACKAGE_ROOT = Path(__file__).resolve().parent
#: Templates ship beside the package in a checkout (DESIGN: templates/ at the top).
DEFAULT_TEMPLATES = PACKAGE_ROOT.parent / "templates"


@dataclass(frozen=True)
class Newsroom:
    name: str
    website: str
    postal_address: str
    time_zone: str
    logo_url: str = ""
    brand_color: str = "#1a4e8a"
    locale: str = "en_US"  # the email's language, dates and direction (digest.locale)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Sender:
    from_email: str
    from_name: str
    reply_to: str = ""
    operators: tuple[str, ...] = ()
    editors: tuple[str, ...] = ()  # a `preview` job mails them the coming edition
    unsubscribe_mailto: str = ""


#: The keys of digest.toml's [sources] table.
SOURCE_KINDS = ("feeds", "pageviews", "pages", "cms", "access_logs")


@dataclass(frozen=True)
class Sources:
    feeds: tuple[str, ...] = ()
    pageviews: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()  # article pages: URLs, files, globs, .txt lists; in order
    cms: tuple[str, ...] = ()  # WordPress REST posts or JSON Feed, by URL or file
    access_logs: tuple[str, ...] = ()  # web server logs (combined format): files, globs, .gz


@dataclass(frozen=True)
class EditionSettings:
    send_time: time = time(6, 0)
    window_hours: int = 24
    more_count: int = 8
    max_per_section: int = 3
    most_read_count: int = 5
    most_read_hours: int = 24  # Most Read's page views: the local days these hours touch
    most_read_repeats: bool = False  # may Most Read list a story the lead or More show?
    recent_leads: int = 3  # a story that led one of the last N sent editions is left out
    #: How much the readers' clicks in the last sent digest count in popularity, beside
    #: the site's page views (0 = not at all, 1 = clicks alone). Off by default.
    digest_clicks_weight: float = 0.0


@dataclass(frozen=True)
class Delivery:
    backend: str = "outbox"
    outbox_dir: Path = Path("var/outbox")
    #: The newsroom's list, imported before each `digest run` and scheduled send; named,
    #: it must be there (environment.subscribers_file). None: not named; subscribers.csv
    #: beside digest.toml is imported when there is one.
    subscribers_file: Path | None = None
    batch_size: int = 1000
    rate_per_second: float = 0.0  # recipients a second for a send in all workers; 0 = no cap
    max_consecutive_failures: int = 5
    retry_attempts: int = 6  # tries per batch on 5xx, timeouts, dropped connections
    retry_base_delay: float = 0.5  # seconds; doubles per try, full jitter
    retry_max_delay: float = 60.0  # longest single wait, 429 resets included
    request_timeout: float = 30.0  # seconds to wait for the mail API's answer
    concurrency: int = 2  # batches in flight per process (each may be in doubt after a crash)
    categories: tuple[str, ...] = ("digest",)
    asm_group_id: int | None = None
    sandbox: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: str = "starttls"  # "none" | "starttls" | "tls"
    smtp_username: str = ""
    #: How long a ledger write that failed (the database restarting, failing over or
    #: locked) is retried, across reconnects and with backoff, before the batch is left
    #: in doubt and the send stops with one line saying how to resume.
    ledger_retry_seconds: float = 120.0
    #: How long after a batch went in doubt to wait for SendGrid's events (`processed`,
    #: `dropped`, ...) to settle it before it is left to the operator.
    event_wait_seconds: float = 900.0


@dataclass(frozen=True)
class Limits:
    """Bounds on what a source can make us read and keep (DESIGN: bounded edges).

    Over a limit is one error line naming the source and the limit; the run goes on.
    """

    fetch_max_bytes: int = 20_000_000  # one response (feed, page, export), after decoding
    fetch_timeout: float = 20.0  # seconds to connect, and between two reads
    source_deadline: float = 60.0  # seconds for one source, every redirect and read included
    collect_deadline: float = 600.0  # seconds for a whole collect; sources left are skipped
    collect_concurrency: int = 100  # sources read at once
    host_concurrency: int = 6  # of them, at most this many from one origin (as a browser)
    title_max_chars: int = 300
    dek_max_chars: int = 1_000
    byline_max_chars: int = 200
    caption_max_chars: int = 500
    body_max_chars: int = 50_000
    url_max_chars: int = 2_000  # the store keeps URLs in VARCHAR(2000)
    note_max_chars: int = 1_000  # the editors' note (digest.note), counted after clean-up


@dataclass(frozen=True)
class Campaign:
    """UTM tags on the email's story links (digest.campaign); off while utm_source is ""."""

    utm_source: str = ""
    utm_medium: str = "email"
    utm_campaign: str = "digest"  # the edition's date is appended: digest-2025-12-05


@dataclass(frozen=True)
class Settings:
    path: Path
    newsroom: Newsroom
    sender: Sender
    sources: Sources
    edition: EditionSettings
    delivery: Delivery
    data_dir: Path
    database_url: str
    base_url: str
    templates_dir: Path
    cron_file: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    limits: Limits = field(default_factory=Limits)
    campaign: Campaign = field(default_factory=Campaign)
    #: Remote story pictures heavier than this are kept and published as email-sized
    #: copies (digest.collect.pictures); 0 = off.
    rehost_pictures_over_kb: int = 0
    related: RelatedSettings = field(default_factory=RelatedSettings)
    #: Story links through base_url/r/<signed token>, counted there (digest.clicks);
    #: per reader: each reader's links also carry their sealed address.
    click_tracking: bool = False
    click_tracking_per_reader: bool = False
    subject_tests: SubjectTestSettings = field(default_factory=SubjectTestSettings)

    @property
    def secret_key(self) -> bytes:
        """DIGEST_SECRET_KEY, or a key generated once and kept in the data folder.

        The generated key lets the embedded demo sign unsubscribe links with no
        set-up; a real deployment sets DIGEST_SECRET_KEY so every machine agrees.
        """
        value = self.env.get("DIGEST_SECRET_KEY", "")
        if value:
            return value.encode()
        key_file = self.data_dir / "secret.key"
        try:
            if not key_file.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(32))
            return key_file.read_text().strip().encode()
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: [storage] data_dir {self.data_dir}: cannot keep the signing key "
                f"{key_file.name} there ({exc.strerror}); make the folder writable or set "
                "DIGEST_SECRET_KEY"
            ) from None


#: Every table of digest.toml and its keys. A key or table not here is a mistake
#: (`more_cont = 8` would otherwise be ignored without a word), so it is refused
#: with the known name it most resembles, as cron.yaml's keys are.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "newsroom": tuple(Newsroom.__dataclass_fields__),
    "sender": tuple(Sender.__dataclass_fields__),
    "sources": SOURCE_KINDS,
    "edition": tuple(EditionSettings.__dataclass_fields__),
    "delivery": tuple(Delivery.__dataclass_fields__),
    "limits": tuple(Limits.__dataclass_fields__),
    "storage": ("data_dir", "database_url"),
    "web": ("base_url", "rehost_pictures_over_kb", "click_tracking", "click_tracking_per_reader"),
    "templates": ("dir",),
    "schedule": ("file",),
    "campaign": tuple(Campaign.__dataclass_fields__),
    "related": tuple(RelatedSettings.__dataclass_fields__),
    "subject_tests": tuple(SubjectTestSettings.__dataclass_fields__),
}


def check_known_keys(raw: dict[str, Any], path: Path) -> None:
    """Refuse a table or key digest.toml does not have, naming the one it resembles."""
    for table, value in raw.items():
        if table not in KNOWN_KEYS:
            tables = list(KNOWN_KEYS)
            raise ConfigError(
                f"{path}: [{table}] is not a settings table; {_suggestion(table, tables)}"
                f"the tables are {', '.join(tables)}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
        known = KNOWN_KEYS[table]
        if table == "sources":
            continue  # its own message below lists the kinds of source
        for key in value:
            if key not in known:
                raise ConfigError(
                    f"{path}: [{table}] {key} is not a setting; {_suggestion(key, known)}"
                    f"see the README's Settings for what [{table}] takes"
                )


def load(path: Path | str = "digest.toml", env: dict[str, str] | None = None) -> Settings:
    """Read and check the newsroom's settings. Every problem is a ConfigError naming the field."""
    path = Path(path)
    env = dict(os.environ if env is None else env)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such settings file; pass --config PATH "
            "or copy digest.toml from the repository"
        )
    if path.is_dir():
        inside = path / "digest.toml"
        raise ConfigError(
            f"{path}: is a folder, not a settings file; pass --config the file itself"
            + (f" ({inside})" if inside.is_file() else " (digest.toml)")
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror})") from None
    base = path.resolve().parent
    check_known_keys(raw, path)

    nr = _section(raw, "newsroom", path)
    newsroom = Newsroom(
        name=_get(nr, "name", str, path, "newsroom", _REQUIRED),
        website=_get(nr, "website", str, path, "newsroom", _REQUIRED),
        postal_address=_get(nr, "postal_address", str, path, "newsroom", _REQUIRED),
        time_zone=_get(nr, "time_zone", str, path, "newsroom", "UTC"),
        logo_url=_logo(base, _get(nr, "logo_url", str, path, "newsroom", ""), path),
        brand_color=_get(nr, "brand_color", str, path, "newsroom", "#1a4e8a"),
        locale=_get(nr, "locale", str, path, "newsroom", "en_US"),
    )
    if newsroom.locale != "en_US" and not locale.known(newsroom.locale):
        raise ConfigError(
            f"{path}: [newsroom] locale {newsroom.locale[:40]!r} is not a locale; use a "
            "language and region such as en_US or es_US"
        )
    try:
        ZoneInfo(newsroom.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: [newsroom] time_zone {newsroom.time_zone!r} is not an IANA time zone "
            "(for example America/Juneau)"
        ) from None
    if not _HEX_COLOUR.fullmatch(newsroom.brand_color):
        raise ConfigError(
            f"{path}: [newsroom] brand_color {newsroom.brand_color[:40]!r} must be a hex "
            "colour such as #1a4e8a"
        )
    if not newsroom.website.lower().startswith(("https://", "http://")):
        raise ConfigError(f"{path}: [newsroom] website must start with http:// or https://")
    if not newsroom.postal_address.strip():
        raise ConfigError(f"{path}: [newsroom] postal_address must not be empty (CAN-SPAM)")

    sd = _section(raw, "sender", path)
    sender = Sender(
        from_email=_get(sd, "from_email", str, path, "sender", _REQUIRED),
        from_name=_get(sd, "from_name", str, path, "sender", newsroom.name),
        reply_to=_get(sd, "reply_to", str, path, "sender", ""),
        operators=_str_list(sd, "operators", path, "sender"),
        editors=_str_list(sd, "editors", path, "sender"),
        unsubscribe_mailto=_get(sd, "unsubscribe_mailto", str, path, "sender", ""),
    )
    if "@" not in sender.from_email:
        raise ConfigError(f"{path}: [sender] from_email {sender.from_email!r} is not an address")
    for key in ("operators", "editors"):
        for address in getattr(sender, key):
            if "@" not in address:
                raise ConfigError(f"{path}: [sender] {key}: {address!r} is not an address")

    so = _section(raw, "sources", path)
    unknown = sorted(set(so) - set(SOURCE_KINDS))
    if unknown:
        raise ConfigError(
            f"{path}: [sources] {unknown[0]} is not a kind of source; "
            f"use {', '.join(SOURCE_KINDS[:-1])} or {SOURCE_KINDS[-1]}"
        )

    def source_list(kind: str) -> tuple[str, ...]:
        return tuple(_resolve_source(base, s) for s in _str_list(so, kind, path, "sources"))

    sources = Sources(
        feeds=source_list("feeds"),
        pageviews=source_list("pageviews"),
        pages=source_list("pages"),
        cms=source_list("cms"),
        access_logs=source_list("access_logs"),
    )

    ed = _section(raw, "edition", path)
    send_time_raw = _get(ed, "send_time", str, path, "edition", "06:00")
    try:
        send_time = time.fromisoformat(send_time_raw)
    except ValueError:
        raise ConfigError(
            f"{path}: [edition] send_time {send_time_raw!r} must be HH:MM, e.g. 06:00"
        ) from None
    edition = EditionSettings(
        send_time=send_time,
        **{
            key: _get(ed, key, type(value), path, "edition", value)
            for key, value in dataclasses.asdict(EditionSettings()).items()
            if key != "send_time"
        },
    )
    for key in ("window_hours", "more_count", "max_per_section", "most_read_hours"):
        if getattr(edition, key) < 1:
            raise ConfigError(f"{path}: [edition] {key} must be at least 1")
    if edition.most_read_count < 0 or edition.recent_leads < 0:
        raise ConfigError(f"{path}: [edition] most_read_count and recent_leads must be 0 or more")
    if not 0.0 <= edition.digest_clicks_weight <= 1.0:
        raise ConfigError(
            f"{path}: [edition] digest_clicks_weight must be from 0 (off) to 1 (clicks alone), "
            f"not {edition.digest_clicks_weight}"
        )

    dl = _section(raw, "delivery", path)
    backend = _get(dl, "backend", str, path, "delivery", "outbox")
    if env.get("DIGEST_BACKEND"):
        backend = env["DIGEST_BACKEND"]
        if backend not in ("outbox", "smtp", "sendgrid"):
            raise ConfigError(f"DIGEST_BACKEND={backend!r} must be outbox, smtp or sendgrid")
    if backend not in ("outbox", "smtp", "sendgrid"):
        raise ConfigError(
            f"{path}: [delivery] backend {backend!r} must be outbox, smtp or sendgrid"
        )
    batch_size = _get(dl, "batch_size", int, path, "delivery", 1000)
    if not 1 <= batch_size <= 1000:
        # SendGrid: "personalizations ... maximum of 1000" per request.
        raise ConfigError(f"{path}: [delivery] batch_size must be 1 to 1000 (SendGrid's limit)")
    smtp_security = _get(dl, "smtp_security", str, path, "delivery", "starttls")
    if smtp_security not in ("none", "starttls", "tls"):
        raise ConfigError(f"{path}: [delivery] smtp_security must be none, starttls or tls")
    asm = dl.get("asm_group_id")
    if asm is not None and (not isinstance(asm, int) or isinstance(asm, bool)):
        raise ConfigError(f"{path}: [delivery] asm_group_id must be an integer")
    named_list = _get(dl, "subscribers_file", str, path, "delivery", "")
    delivery = Delivery(
        backend=backend,
        outbox_dir=_resolve(base, _get(dl, "outbox_dir", str, path, "delivery", "var/outbox")),
        subscribers_file=_resolve(base, named_list) if named_list.strip() else None,
        batch_size=batch_size,
        rate_per_second=_get(dl, "rate_per_second", float, path, "delivery", 0.0),
        max_consecutive_failures=_get(dl, "max_consecutive_failures", int, path, "delivery", 5),
        retry_attempts=_get(dl, "retry_attempts", int, path, "delivery", 6),
        retry_base_delay=_env_float(
            env,
            "DIGEST_RETRY_BASE_DELAY",
            _get(dl, "retry_base_delay", float, path, "delivery", 0.5),
        ),
        retry_max_delay=_get(dl, "retry_max_delay", float, path, "delivery", 60.0),
        request_timeout=_get(dl, "request_timeout", float, path, "delivery", 30.0),
        concurrency=_get(dl, "concurrency", int, path, "delivery", 2),
        categories=_str_list(dl, "categories", path, "delivery") or ("digest",),
        asm_group_id=asm,
        sandbox=_get(dl, "sandbox", bool, path, "delivery", False),
        smtp_host=env.get(
            "DIGEST_SMTP_HOST", _get(dl, "smtp_host", str, path, "delivery", "localhost")
        ),
        smtp_port=_env_port(
            env, "DIGEST_SMTP_PORT", _get(dl, "smtp_port", int, path, "delivery", 25)
        ),
        smtp_security=smtp_security,
        smtp_username=env.get(
            "DIGEST_SMTP_USERNAME", _get(dl, "smtp_username", str, path, "delivery", "")
        ),
        ledger_retry_seconds=_get(dl, "ledger_retry_seconds", float, path, "delivery", 120.0),
        event_wait_seconds=_get(dl, "event_wait_seconds", float, path, "delivery", 900.0),
    )
    if not 1 <= delivery.smtp_port <= 65535:
        raise ConfigError(f"{path}: [delivery] smtp_port must be 1 to 65535")
    if delivery.ledger_retry_seconds < 0 or delivery.event_wait_seconds < 0:
        raise ConfigError(
            f"{path}: [delivery] ledger_retry_seconds and event_wait_seconds must not be negative"
        )
    for key in ("retry_attempts", "max_consecutive_failures", "concurrency"):
        if getattr(delivery, key) < 1:
            raise ConfigError(f"{path}: [delivery] {key} must be at least 1")
    if delivery.request_timeout <= 0 or delivery.rate_per_second < 0:
        raise ConfigError(
            f"{path}: [delivery] request_timeout must be positive, rate_per_second 0 or more"
        )
    if len(delivery.categories) > 10:
        raise ConfigError(f"{path}: [delivery] categories: at most 10 (SendGrid's limit)")

    li = _section(raw, "limits", path)
    defaults = Limits()
    limits = Limits(
        **{
            name: _positive(
                li, name, type(getattr(defaults, name)), path, "limits", getattr(defaults, name)
            )
            for name in Limits.__dataclass_fields__
        }
    )

    st = _section(raw, "storage", path)
    data_dir = _resolve(base, _get(st, "data_dir", str, path, "storage", "var"))
    database_url = env.get("DIGEST_DATABASE_URL") or _get(
        st, "database_url", str, path, "storage", ""
    )
    if not database_url:
        database_url = f"sqlite:///{data_dir / 'digest.db'}"

    wb = _section(raw, "web", path)
    base_url = _get(wb, "base_url", str, path, "web", "http://localhost:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}: [web] base_url must start with http:// or https://")
    rehost = _get(wb, "rehost_pictures_over_kb", int, path, "web", 0)
    if rehost < 0:
        raise ConfigError(f"{path}: [web] rehost_pictures_over_kb must be 0 (off) or more")
    click_tracking = _get(wb, "click_tracking", bool, path, "web", False)
    per_reader = _get(wb, "click_tracking_per_reader", bool, path, "web", False)
    if per_reader and not click_tracking:
        raise ConfigError(
            f"{path}: [web] click_tracking_per_reader = true needs click_tracking = true "
            "(a reader's clicks are counted on the newsroom's own click links)"
        )

    templates = _get(_section(raw, "templates", path), "dir", str, path, "templates", "")
    if templates and not _resolve(base, templates).is_dir():
        raise ConfigError(
            f"{path}: [templates] dir {str(_resolve(base, templates))!r} is not a folder; "
            "leave it out to use the templates that come with digest"
        )
    return Settings(
        path=path.resolve(),
        newsroom=newsroom,
        sender=sender,
        sources=sources,
        edition=edition,
        delivery=delivery,
        data_dir=data_dir,
        database_url=database_url,
        base_url=base_url,
        templates_dir=_resolve(base, templates) if templates else DEFAULT_TEMPLATES,
        cron_file=_resolve(
            base, _get(_section(raw, "schedule", path), "file", str, path, "schedule", "cron.yaml")
        ),
        env=env,
        limits=limits,
        campaign=_campaign(_section(raw, "campaign", path), path),
        rehost_pictures_over_kb=rehost,
        click_tracking=click_tracking,
        click_tracking_per_reader=per_reader,
        related=related_settings(_section(raw, "related", path), path, _get),
        subject_tests=subject_test_settings(_section(raw, "subject_tests", path), path, _get),
    )


def _campaign(table: dict[str, Any], path: Path) -> Campaign:
    values = {
        key: _get(table, key, str, path, "campaign", default).strip()
        for key, default in dataclasses.asdict(Campaign()).items()
    }
    for key, value in values.items():
        # A tag is a word an analytics report shows, not a place for markup or spaces.
        if value and not re.fullmatch(r"[\w.-]{1,100}", value):
            raise ConfigError(
                f"{path}: [campaign] {key} {value[:40]!r} must be letters, digits, '.', '-' "
                "or '_' (at most 100)"
            )
    if not values["utm_source"] and table:
        raise ConfigError(f'{path}: [campaign] needs utm_source (for example "digest")')
    return Campaign(**values)
