"""The tables, the engine and the migration hook, and the helpers every aggregate shares.

Every Table of the schema (SendGrid's events aside: events.py), the UTC column type,
make_engine, migrate and newest_revision, and the small pieces the aggregates' queries
share: now(), the dialect's INSERT and upsert, the row -> dataclass converters.

Portable SQL only: the same code runs on the embedded SQLite file and on
PostgreSQL (DIGEST_DATABASE_URL). The schema is created and upgraded by the
Alembic migrations in digest/migrations, applied when the store is opened.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from digest.models import (
    Batch,
    Recipient,
    Story,
    Subscriber,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from digest.store import Store

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL would convert."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", String(2000), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("dek", Text, nullable=False, default=""),
    Column("byline", Text, nullable=False, default=""),
    Column("section", String(200), nullable=False, default=""),
    Column("image_url", Text, nullable=False, default=""),
    Column("image_caption", Text, nullable=False, default=""),
    Column("image_credit", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("prominence", Float, nullable=False, default=0.0),
    Column("body", Text, nullable=False, default="", server_default=""),
    Column("published_at", UTCDateTime, nullable=False, index=True),
    Column("collected_at", UTCDateTime, nullable=False),
    # Which of a window's stories the related index must read again, from the index alone.
    Index("ix_stories_published_collected", "published_at", "collected_at", "id"),
)

# What each feed or CMS source answered with last time (ETag, Last-Modified), sent back
# on the next collect so that an unchanged source is a 304 and nothing is parsed.
source_validators = Table(
    "source_validators",
    metadata,
    Column("source", String(2000), primary_key=True),
    Column("etag", Text, nullable=False, default=""),
    Column("last_modified", Text, nullable=False, default=""),
    Column("updated_at", UTCDateTime, nullable=False),
)

page_views = Table(
    "page_views",
    metadata,
    Column("url", String(2000), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("source", String(500), primary_key=True),
    Column("views", Integer, nullable=False),
)

editions = Table(
    "editions",
    metadata,
    Column("name", String(10), primary_key=True),
    Column("send_at", UTCDateTime, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False),
    Column("status", String(20), nullable=False, default="draft"),
    Column("updated_at", UTCDateTime, nullable=False),
    # The editors' note as mailed, and why each candidate is out (JSON, by story URL).
    Column("note", Text, nullable=False, default="", server_default=""),
    Column("left_out", Text, nullable=False, default="[]", server_default="[]"),
)

edition_picks = Table(
    "edition_picks",
    metadata,
    Column("edition", String(10), ForeignKey("editions.name"), primary_key=True),
    Column("slot", String(20), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("story_id", Integer, ForeignKey("stories.id"), nullable=False),
    Column("score", Float, nullable=False),
    Column("breakdown", Text, nullable=False),  # JSON: {"recency": 0.8, ...}
    Column("views", Integer, nullable=False, default=0),
    Column("note", Text, nullable=False, default="", server_default=""),
    # A "related" pick hangs under another story of the edition (digest.related).
    Column("under_story_id", Integer, ForeignKey("stories.id"), nullable=True),
)

# An editor's changes to an edition (models.Overrides), kept apart from its picks so
# that ranking it again after a later collect applies them again. No foreign key:
# save_edition replaces the editions row, and the overrides outlive that.
edition_overrides = Table(
    "edition_overrides",
    metadata,
    Column("edition", String(10), primary_key=True),
    Column("lead", Text, nullable=False, default=""),
    Column("pinned", Text, nullable=False, default="[]"),  # JSON list of URLs
    Column("dropped", Text, nullable=False, default="[]"),  # JSON list of URLs
    Column("subject", Text, nullable=False, default=""),
    Column("note", Text, nullable=False, default="", server_default=""),
    Column("updated_at", UTCDateTime, nullable=False),
    # Bumped by every save: two editors saving at once cannot lose a change.
    Column("revision", Integer, nullable=False, default=1),
    # Related stories an editor added under the lead, or dropped: JSON lists of URLs.
    Column("related_added", Text, nullable=False, default="[]", server_default="[]"),
    Column("related_dropped", Text, nullable=False, default="[]", server_default="[]"),
)

# The related-stories index (digest.related): each story's weighted terms, and when
# they were made (a story collected again since is indexed again). published_at is
# kept beside each term so a window's postings are read from one index.
story_index = Table(
    "story_index",
    metadata,
    Column("story_id", Integer, ForeignKey("stories.id"), primary_key=True),
    Column("published_at", UTCDateTime, nullable=False, index=True),
    Column("indexed_at", UTCDateTime, nullable=False),
    Column("terms", Text, nullable=False),  # JSON {term: weight}: the story's own vector
    Index("ix_story_index_fresh", "story_id", "indexed_at", "published_at"),  # not the JSON
)
story_terms = Table(
    "story_terms",
    metadata,
    Column("term", String(80), primary_key=True),
    Column("published_at", UTCDateTime, primary_key=True),
    Column("story_id", Integer, ForeignKey("stories.id"), primary_key=True),
    Column("weight", Float, nullable=False),
)

# What editors did to an edition, newest last: shown beside the preview.
edition_events = Table(
    "edition_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition", String(10), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("who", Text, nullable=False),
    Column("action", Text, nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-case
    Column("name", Text, nullable=False, default=""),
    Column("sections", Text, nullable=False, default=""),  # ";"-joined
    Column("status", String(20), nullable=False, default="active", index=True),
    Column("attributes", Text, nullable=False, default="{}"),  # JSON
    Column("updated_at", UTCDateTime, nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(40), nullable=False),  # unsubscribed | bounced | complained
    Column("source", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition", String(10), ForeignKey("editions.name"), nullable=False, unique=True),
    Column("backend", String(20), nullable=False),
    Column("state", String(20), nullable=False),  # sending | paused | done | stopped
    Column("recipients", Integer, nullable=False, default=0),
    Column("batches", Integer, nullable=False, default=0),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

send_batches = Table(
    "send_batches",
    metadata,
    Column("send_id", Integer, ForeignKey("sends.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("state", String(20), nullable=False, index=True),  # pending|sending|sent|failed
    Column("size", Integer, nullable=False),
    Column("recipients", Text, nullable=False),  # JSON [[email, name], ...]: the snapshot
    # The recipients' section preference, lower-case (subscribers.sections): a batch
    # holds readers of one preference, so it goes out as one copy of the edition.
    Column("sections", Text, nullable=False, default="", server_default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("response_code", Integer),
    Column("message_id", Text),
    Column("error", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    # The token of the claim that took the batch: a claim whose commit went
    # unanswered (the database restarting) is found again by it, not made twice.
    Column("claim", String(32)),
    # "events" when SendGrid's events settled a batch a crash had left in doubt.
    Column("settled_by", String(20)),
    # Of a send with a subject test (store/subjects.py): which subject the batch
    # goes out with (an index into the test's subjects); None for an ordinary send.
    Column("variant", Integer),
)

# Recipient by recipient, for backends that deliver one message at a time (SMTP,
# outbox): "trying" is written before a message is handed over, "accepted" once
# the relay said 250. So a crash leaves at most the one recipient in "trying" in
# doubt, not its batch. Queries in digest/store/delivery.py; why in digest/send/journal.py.
deliveries = Table(
    "deliveries",
    metadata,
    Column("send_id", Integer, ForeignKey("sends.id"), primary_key=True),
    Column("number", Integer, primary_key=True),  # the batch
    Column("email", String(320), primary_key=True),
    Column("state", String(10), nullable=False),  # trying | accepted
    Column("updated_at", UTCDateTime, nullable=False),
)

# An edition rendered, per variant ("" = the whole edition; else the sections a
# reader prefers, see rank.variant_key). Kept so that a send, its resumption and
# every worker mail the very copy that was rendered and previewed, and so that a
# send need not load the render stack at all (docs/benchmarks.md).
renders = Table(
    "renders",
    metadata,
    Column("edition", String(10), ForeignKey("editions.name"), primary_key=True),
    Column("variant", String(2000), primary_key=True),
    # What went into it (copies.render_fingerprint): a different one means re-render.
    Column("fingerprint", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("warnings", Text, nullable=False),  # JSON list
    Column("created_at", UTCDateTime, nullable=False),
    # The random key in the copy's substitution tokens (digest.tokens); "" = none.
    Column("token_key", String(32), nullable=False, server_default=""),
)

# One row per scheduled job per fire time: the primary key is what stops the same
# fire time from running twice, whichever scheduler (or takeover) gets to it.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(200), primary_key=True),
    Column("fire_time", UTCDateTime, primary_key=True),
    # running | ok | failed | held | skipped | stopped | interrupted
    Column("state", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("holder", String(200), nullable=False, default=""),  # the scheduler that ran it
    Column("starts", Integer, nullable=False, default=1),  # 2 = resumed after a stop
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)

# The single-active-scheduler lease on SQLite (a heartbeat row); on PostgreSQL the
# advisory lock decides and this row only says who holds it.
scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

#: A subscriber's section preference as sends group by it: lower-case, so
#: "News;Politics" and "news;politics" are one preference. (subscribers.py writes
#: them sorted; SQL's lower() is ASCII-only, which only splits a rare preference
#: into two groups that get the same copy.)
_preference = func.lower(func.coalesce(subscribers.c.sections, ""))

_UNIQUE = {
    stories: ["url"],
    page_views: ["url", "day", "source"],
    subscribers: ["email"],
    source_validators: ["source"],
}


def now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while a send writes; busy_timeout makes a second
    # writer wait instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # pool_pre_ping: a pooled connection that a database restart or failover cut is
    # found dead when checked out and replaced, rather than failing the next write.
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


#: Seconds to wait for PostgreSQL to answer a new connection. libpq's default is to
#: wait as long as the operating system does (minutes, for a host that drops packets);
#: a command should say "cannot connect" well before an operator gives up on it.
CONNECT_TIMEOUT = 10


def _with_connect_timeout(url: str) -> str:
    """The URL with connect_timeout, unless it or PGCONNECT_TIMEOUT already says one."""
    if not url.startswith("postgresql") or "connect_timeout=" in url:
        return url
    if os.environ.get("PGCONNECT_TIMEOUT"):
        return url
    return f"{url}{'&' if '?' in url else '?'}connect_timeout={CONNECT_TIMEOUT}"


def newest_revision() -> str | None:
    """The head revision of digest/migrations, read from the files without Alembic.

    None when the files do not say plainly (a merge, an unusual layout): then
    Alembic itself decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision(?:: [\w\[\], |]+)? = "([^"]+)"$', source, re.M)
        down = re.search(r"^down_revision(?:: [\w\[\], |]+)? = (.+)$", source, re.M)
        if revision is None or down is None:
            return None
        revisions.add(revision[1])
        parents.update(re.findall(r'"([^"]+)"', down[1]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest Alembic revision.

    Every command opens the store. When the database is already at the newest
    revision, Alembic is not even imported: that saves about 9 MB and 0.2 s per
    process, which matters to a send's peak memory (docs/benchmarks.md).
    """
    head = newest_revision()
    if head is not None:
        with engine.connect() as connection:
            try:
                current = connection.scalar(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:  # no version table yet: a new database
                current = None
        if current == head:
            return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT on both SQLite and PostgreSQL.

    (Imported here: the PostgreSQL dialect costs a SQLite process 0.1 s to import.)
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _upsert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], update_cols: Sequence[str]
) -> None:
    if not rows:
        return
    stmt = _insert_for(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=_UNIQUE[table],
        set_={col: getattr(stmt.excluded, col) for col in update_cols},
    )
    conn.execute(stmt, rows)


#: json.dumps(..., sort_keys=True) builds a new encoder per call; this one is made once.
_attributes_json = json.JSONEncoder(sort_keys=True).encode

_SUBSCRIBER_COLUMNS = ("email", "name", "sections", "status", "attributes", "updated_at")


#: One row of an import, ready to write: (email, name, sections, status, attributes JSON).
ImportRow = tuple[str, str, str, str, str]


def _upsert_subscriber_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or update subscribers, straight through the driver.

    The same ON CONFLICT statement `_upsert` builds, but without SQLAlchemy's
    per-row parameter processing, which cost about 12 µs of a row's 16 when
    importing a million-row list; the values come in already processed (the last,
    updated_at, bound for the dialect). SQLite: the driver's executemany, which
    steps one prepared statement. PostgreSQL: one statement for the whole chunk,
    each column one array parameter (unnest), instead of a round trip a row.
    """
    if not rows:
        return
    columns = ", ".join(_SUBSCRIBER_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _SUBSCRIBER_COLUMNS[1:])
    conflict = f"ON CONFLICT (email) DO UPDATE SET {updates}"
    if conn.dialect.name == "postgresql":
        emails, names, sections, statuses, attributes, stamps = zip(*rows, strict=True)
        conn.exec_driver_sql(
            f"INSERT INTO subscribers ({columns}) "
            "SELECT c.*, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
            f"%s::text[]) AS c {conflict}",
            (stamps[0], list(emails), list(names), list(sections), list(statuses),
             list(attributes)),
        )  # fmt: skip
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO subscribers ({columns}) VALUES ({', '.join([mark] * 6)}) {conflict}",
        rows,
    )


def _known_addresses(
    conn: Connection, emails: list[str], stamp_value: Any
) -> dict[str, tuple[str | None, bool, str | None]]:
    """What the store knows of these (lower-case) addresses, for those it knows:
    email -> (the subscriber's status or None, written at `stamp_value`, the suppression
    reason or None). One query, the addresses one parameter (a JSON array in SQLite,
    a text array in PostgreSQL), joined to both tables through their email indexes."""
    if conn.dialect.name == "postgresql":
        chunk, parameters = "unnest(%s::text[]) AS c(value)", (stamp_value, emails)
        mark = "%s"
    else:
        chunk, parameters = "json_each(?) AS c", (stamp_value, json.dumps(emails))
        mark = "?"
    found = conn.exec_driver_sql(
        f"SELECT c.value, s.status, s.updated_at = {mark}, x.reason FROM {chunk} "
        "LEFT JOIN subscribers AS s ON s.email = c.value "
        "LEFT JOIN suppressions AS x ON x.email = c.value "
        "WHERE s.email IS NOT NULL OR x.email IS NOT NULL",
        parameters,
    )
    return {email: (status, bool(same), reason) for email, status, same, reason in found}


def _story(row: Any) -> Story:
    return Story(
        id=row.id,
        url=row.url,
        title=row.title,
        dek=row.dek,
        byline=row.byline,
        section=row.section,
        image_url=row.image_url,
        image_caption=row.image_caption,
        image_credit=row.image_credit,
        source=row.source,
        prominence=row.prominence,
        body=row.body,
        published_at=row.published_at,
    )


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        email=row.email,
        name=row.name,
        sections=tuple(s for s in row.sections.split(";") if s),
        status=row.status,
        attributes=json.loads(row.attributes or "{}"),
    )


@dataclass
class SubscriberWrite:
    """What writing one chunk of subscribers did."""

    added: int = 0
    updated: int = 0
    kept_out: int = 0  # asked to be active, but the address had left: not resubscribed
    repeated: list[str] = field(default_factory=list)  # written earlier in the same import


def claimed_batch(send_id: int, row: Any) -> Batch:
    """A batch as a claim returns it (number, recipients, attempts, sections), in hand."""
    return Batch(
        send_id=send_id,
        number=row.number,
        recipients=list(map(Recipient._make, json.loads(row.recipients))),
        state="sending",
        attempts=row.attempts,
        sections=row.sections,
        variant=getattr(row, "variant", None),
    )


class Aggregate:
    """One aggregate's queries, over the pooled engine of the Store that holds it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def dialect(self) -> str:
        return self.store.dialect

    def begin(self) -> AbstractContextManager[Connection]:
        return self.store.begin()
