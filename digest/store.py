"""SQLAlchemy tables and the queries the stages need.

Portable SQL only: the same code runs on the embedded SQLite file and on
PostgreSQL (DIGEST_DATABASE_URL). The schema is created and upgraded by the
Alembic migrations in digest/migrations, applied when the store is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    case,
    cast,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from digest.models import (
    LEFT_STATUSES,
    Batch,
    Edition,
    EditorEvent,
    Overrides,
    PageViews,
    Pick,
    Recipient,
    RenderedEdition,
    Story,
    Subscriber,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
    Column("published_at", UTCDateTime, nullable=False, index=True),
    Column("collected_at", UTCDateTime, nullable=False),
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
    Column("updated_at", UTCDateTime, nullable=False),
    # Bumped by every save: two editors saving at once cannot lose a change.
    Column("revision", Integer, nullable=False, default=1),
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
)

# Recipient by recipient, for backends that deliver one message at a time (SMTP,
# outbox): "trying" is written before a message is handed over, "accepted" once
# the relay said 250. So a crash leaves at most the one recipient in "trying" in
# doubt, not its batch. Queries in digest/deliveries.py; why in digest/send/journal.py.
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

_UNIQUE = {stories: ["url"], page_views: ["url", "day", "source"], subscribers: ["email"]}


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


def _upsert_subscriber_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or update subscribers, straight through the driver's executemany.

    The same ON CONFLICT statement `_upsert` builds, but without SQLAlchemy's
    per-row parameter processing, which cost about 12 µs of a row's 16 when
    importing a million-row list; the values come in already processed.
    """
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(_SUBSCRIBER_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _SUBSCRIBER_COLUMNS[1:])
    conn.exec_driver_sql(
        f"INSERT INTO subscribers ({columns}) VALUES ({', '.join([mark] * 6)}) "
        f"ON CONFLICT (email) DO UPDATE SET {updates}",
        rows,
    )


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
    )


class Store:
    """The database behind every stage. One per process; connections are pooled."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> Store:
        engine = make_engine(_with_connect_timeout(url))
        try:
            if upgrade:
                migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- stories -----------------------------------------------------------
    def upsert_stories(self, items: Iterable[Story]) -> tuple[int, int]:
        """Insert new stories, update known ones (by canonical URL). Returns (new, updated)."""
        rows = []
        seen: set[str] = set()
        for s in items:
            if s.url in seen:
                continue
            seen.add(s.url)
            rows.append(
                {
                    "url": s.url,
                    "title": s.title,
                    "dek": s.dek,
                    "byline": s.byline,
                    "section": s.section,
                    "image_url": s.image_url,
                    "image_caption": s.image_caption,
                    "image_credit": s.image_credit,
                    "source": s.source,
                    "prominence": s.prominence,
                    "published_at": s.published_at,
                    "collected_at": now(),
                }
            )
        if not rows:
            return 0, 0
        with self.begin() as conn:
            known = set()
            urls = [r["url"] for r in rows]
            for i in range(0, len(urls), 500):
                known.update(
                    conn.scalars(select(stories.c.url).where(stories.c.url.in_(urls[i : i + 500])))
                )
            cols = [c for c in rows[0] if c != "url"]
            _upsert(conn, stories, rows, cols)
        return len(rows) - len(known), len(known)

    def stories_between(self, start: datetime, end: datetime) -> list[Story]:
        with self.begin() as conn:
            result = conn.execute(
                select(stories)
                .where(stories.c.published_at >= start, stories.c.published_at < end)
                .order_by(stories.c.published_at.desc(), stories.c.id)
            )
            return [_story(r) for r in result]

    def stories_by_id(self, ids: Iterable[int]) -> dict[int, Story]:
        ids = list(ids)
        if not ids:
            return {}
        with self.begin() as conn:
            result = conn.execute(select(stories).where(stories.c.id.in_(ids)))
            return {r.id: _story(r) for r in result}

    def count_stories(self) -> int:
        with self.begin() as conn:
            return conn.scalar(select(func.count()).select_from(stories)) or 0

    # -- page views --------------------------------------------------------
    def upsert_pageviews(self, items: Iterable[PageViews]) -> int:
        merged: dict[tuple[str, date, str], int] = {}
        for pv in items:
            key = (pv.url, pv.day, pv.source)
            merged[key] = merged.get(key, 0) + pv.views
        rows = [{"url": u, "day": d, "source": s, "views": v} for (u, d, s), v in merged.items()]
        with self.begin() as conn:
            for i in range(0, len(rows), 1000):
                _upsert(conn, page_views, rows[i : i + 1000], ["views"])
        return len(rows)

    def views_by_url(self, first_day: date, last_day: date) -> dict[str, int]:
        """Total page views per URL over local days first_day..last_day inclusive."""
        with self.begin() as conn:
            result = conn.execute(
                select(page_views.c.url, func.sum(page_views.c.views))
                .where(page_views.c.day >= first_day, page_views.c.day <= last_day)
                .group_by(page_views.c.url)
            )
            return {url: int(total) for url, total in result}

    # -- editions ----------------------------------------------------------
    def save_edition(self, edition: Edition) -> None:
        """Store an edition and its picks, replacing an earlier draft of the same name."""
        with self.begin() as conn:
            # Renders of the earlier draft describe other picks: they go with it.
            conn.execute(renders.delete().where(renders.c.edition == edition.name))
            conn.execute(edition_picks.delete().where(edition_picks.c.edition == edition.name))
            conn.execute(editions.delete().where(editions.c.name == edition.name))
            conn.execute(
                editions.insert().values(
                    name=edition.name,
                    send_at=edition.send_at,
                    window_start=edition.window_start,
                    window_end=edition.window_end,
                    subject=edition.subject,
                    preheader=edition.preheader,
                    status=edition.status,
                    updated_at=now(),
                )
            )
            rows = [
                {
                    "edition": edition.name,
                    "slot": p.slot,
                    "position": p.position,
                    "story_id": p.story.id,
                    "score": p.score,
                    "breakdown": json.dumps(p.breakdown, sort_keys=True),
                    "views": p.views,
                    "note": p.note,
                }
                for p in edition.picks
            ]
            if rows:
                conn.execute(edition_picks.insert(), rows)

    def load_edition(self, name: str) -> Edition | None:
        with self.begin() as conn:
            row = conn.execute(select(editions).where(editions.c.name == name)).first()
            if row is None:
                return None
            pick_rows = conn.execute(
                select(edition_picks)
                .where(edition_picks.c.edition == name)
                .order_by(edition_picks.c.slot, edition_picks.c.position)
            ).all()
        by_id = self.stories_by_id(p.story_id for p in pick_rows)
        picks = [
            Pick(
                story=by_id[p.story_id],
                slot=p.slot,
                position=p.position,
                score=p.score,
                breakdown=json.loads(p.breakdown),
                views=p.views,
                note=p.note,
            )
            for p in pick_rows
        ]
        leads = [p for p in picks if p.slot == "lead"]
        return Edition(
            name=row.name,
            send_at=row.send_at,
            window_start=row.window_start,
            window_end=row.window_end,
            subject=row.subject,
            preheader=row.preheader,
            status=row.status,
            lead=leads[0] if leads else None,
            more=[p for p in picks if p.slot == "more"],
            most_read=[p for p in picks if p.slot == "most_read"],
        )

    def set_edition_status(self, name: str, status: str) -> None:
        with self.begin() as conn:
            conn.execute(
                update(editions)
                .where(editions.c.name == name)
                .values(status=status, updated_at=now())
            )

    def load_overrides(self, edition: str) -> Overrides:
        return self.overrides_revision(edition)[0]

    def overrides_revision(self, edition: str) -> tuple[Overrides, int]:
        """An edition's overrides and their revision (0 = none yet), for save_overrides."""
        with self.begin() as conn:
            row = conn.execute(
                select(edition_overrides).where(edition_overrides.c.edition == edition)
            ).first()
        if row is None:
            return Overrides(), 0
        overrides = Overrides(
            lead=row.lead,
            pinned=json.loads(row.pinned),
            dropped=json.loads(row.dropped),
            subject=row.subject,
        )
        return overrides, row.revision

    def save_overrides(
        self, edition: str, overrides: Overrides, revision: int, who: str, actions: list[str]
    ) -> bool:
        """Replace an edition's overrides, if they are still at `revision`, and record what
        changed, in one transaction. False when another editor saved first: load again."""
        at = now()
        values = {
            "lead": overrides.lead,
            "pinned": json.dumps(overrides.pinned),
            "dropped": json.dumps(overrides.dropped),
            "subject": overrides.subject,
            "updated_at": at,
            "revision": revision + 1,
        }
        with self.begin() as conn:
            if revision == 0:
                statement = (
                    _insert_for(conn, edition_overrides)
                    .values(edition=edition, **values)
                    .on_conflict_do_nothing()
                )
            else:
                statement = (
                    update(edition_overrides)
                    .where(
                        edition_overrides.c.edition == edition,
                        edition_overrides.c.revision == revision,
                    )
                    .values(**values)
                )
            if conn.execute(statement).rowcount != 1:
                return False
            self._log_events(conn, edition, who, actions, at)
        return True

    def log_edition_event(self, edition: str, who: str, action: str) -> None:
        with self.begin() as conn:
            self._log_events(conn, edition, who, [action], now())

    @staticmethod
    def _log_events(
        conn: Connection, edition: str, who: str, actions: list[str], at: datetime
    ) -> None:
        if actions:
            conn.execute(
                edition_events.insert(),
                [{"edition": edition, "at": at, "who": who, "action": a} for a in actions],
            )

    def edition_events(self, edition: str, limit: int = 50) -> list[EditorEvent]:
        """The latest of what editors did to an edition, oldest first."""
        with self.begin() as conn:
            rows = conn.execute(
                select(edition_events)
                .where(edition_events.c.edition == edition)
                .order_by(edition_events.c.id.desc())
                .limit(limit)
            ).all()
        return [EditorEvent(r.edition, r.at, r.who, r.action) for r in reversed(rows)]

    def stories_by_url(self, urls: Iterable[str]) -> dict[str, Story]:
        wanted = list(dict.fromkeys(urls))
        if not wanted:
            return {}
        with self.begin() as conn:
            rows = conn.execute(select(stories).where(stories.c.url.in_(wanted))).all()
        return {row.url: _story(row) for row in rows}

    def save_render(self, variant: str, fingerprint: str, rendered: RenderedEdition) -> None:
        """Keep a rendered copy of an edition, replacing the variant's earlier one."""
        with self.begin() as conn:
            key = (renders.c.edition == rendered.name) & (renders.c.variant == variant)
            conn.execute(renders.delete().where(key))
            conn.execute(
                renders.insert().values(
                    edition=rendered.name,
                    variant=variant,
                    fingerprint=fingerprint,
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    warnings=json.dumps(rendered.warnings),
                    created_at=now(),
                    token_key=rendered.token_key,
                )
            )

    def load_render(self, edition: str, variant: str) -> tuple[str, RenderedEdition] | None:
        """(fingerprint, rendered copy) of one variant of an edition, if it was rendered."""
        with self.begin() as conn:
            row = conn.execute(
                select(renders).where(renders.c.edition == edition, renders.c.variant == variant)
            ).first()
        if row is None:
            return None
        return row.fingerprint, RenderedEdition(
            name=row.edition,
            subject=row.subject,
            preheader=row.preheader,
            html=row.html,
            text=row.text,
            warnings=json.loads(row.warnings),
            token_key=row.token_key,
        )

    def edition_names(self) -> list[str]:
        with self.begin() as conn:
            return list(conn.scalars(select(editions.c.name).order_by(editions.c.name.desc())))

    # -- subscribers and suppressions ---------------------------------------
    def suppressed(self, emails: Sequence[str]) -> dict[str, str]:
        """The reason each of these (lower-case) addresses is suppressed, if it is."""
        found: dict[str, str] = {}
        with self.begin() as conn:
            for i in range(0, len(emails), 500):
                chunk = list(emails[i : i + 500])
                result = conn.execute(
                    select(suppressions.c.email, suppressions.c.reason).where(
                        suppressions.c.email.in_(chunk)
                    )
                )
                found.update({k: v for k, v in result})
        return found

    def suppress(self, email: str, reason: str, source: str = "") -> bool:
        """Suppress an address for good and mark the subscriber. False if it already was.

        The first reason stands (an address that unsubscribed and later bounces
        stays "unsubscribed"), and the subscriber's status says the same. Safe
        when two suppress one address at once (a one-click POST and a webhook
        event): the insert gives way on conflict instead of failing.
        """
        email = email.lower()
        with self.begin() as conn:
            added = conn.execute(
                _insert_for(conn, suppressions)
                .values(email=email, reason=reason, source=source, created_at=now())
                .on_conflict_do_nothing(index_elements=["email"])
                .returning(suppressions.c.email)
            ).first()
            standing = conn.scalar(
                select(suppressions.c.reason).where(suppressions.c.email == email)
            )
            conn.execute(
                update(subscribers)
                .where(subscribers.c.email == email, subscribers.c.status != standing)
                .values(status=standing, updated_at=now())
            )
            return added is not None

    def upsert_subscribers(self, items: Sequence[Subscriber]) -> tuple[int, int, int]:
        """Add or update subscribers, never reactivating one who left.

        Returns (added, updated, kept_out): kept_out counts rows that asked to be
        active for an address that unsubscribed, bounced or complained.
        """
        unique: dict[str, Subscriber] = {}
        for s in items:  # a later row for the same address wins, as an update would
            email = s.email.lower()
            unique[email] = s if s.email == email else replace(s, email=email)
        result = self.import_subscribers(list(unique.values()))
        return result.added, result.updated, result.kept_out

    def import_subscribers(
        self, items: Sequence[Subscriber], stamp: datetime | None = None
    ) -> SubscriberWrite:
        """upsert_subscribers for one chunk of a longer import.

        Every chunk of one import is written with the same `stamp` (updated_at).
        A row whose address already carries that stamp repeats an earlier row of
        the same import: it is skipped (the first row wins) and listed in
        `repeated`. So an import finds repeats across a million rows without
        holding a million addresses in memory. Addresses must be lower-case and
        unique within `items`.
        """
        result = SubscriberWrite()
        if not items:
            return result
        stamp = stamp or now()
        emails = [s.email for s in items]
        gone = self.suppressed(emails)
        with self.begin() as conn:
            existing: dict[str, tuple[str, datetime]] = {}
            for i in range(0, len(emails), 500):
                found = conn.execute(
                    select(
                        subscribers.c.email, subscribers.c.status, subscribers.c.updated_at
                    ).where(subscribers.c.email.in_(emails[i : i + 500]))
                )
                existing.update({email: (status, at) for email, status, at in found})
            processor = subscribers.c.updated_at.type.bind_processor(conn.dialect)
            stamp_value = processor(stamp) if processor else stamp
            rows = []
            new_suppressions = []
            for s in items:
                email = s.email
                known = existing.get(email)
                if known is not None and known[1] == stamp:
                    result.repeated.append(email)
                    continue
                status = s.status
                left = gone.get(email) or (
                    known[0] if known is not None and known[0] in LEFT_STATUSES else None
                )
                if left and status not in LEFT_STATUSES:
                    result.kept_out += 1
                    status = left
                if status in LEFT_STATUSES and email not in gone:
                    new_suppressions.append(
                        {"email": email, "reason": status, "source": "import", "created_at": stamp}
                    )
                    gone[email] = status
                if known is None:
                    result.added += 1
                else:
                    result.updated += 1
                rows.append(
                    (
                        email,
                        s.name,
                        ";".join(s.sections),
                        status,
                        _attributes_json(s.attributes) if s.attributes else "{}",
                        stamp_value,
                    )
                )
            _upsert_subscriber_rows(conn, rows)
            if new_suppressions:
                conn.execute(suppressions.insert(), new_suppressions)
        return result

    def subscriber(self, email: str) -> Subscriber | None:
        with self.begin() as conn:
            row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
        return _subscriber(row) if row is not None else None

    def suppression(self, email: str) -> Any | None:
        """(reason, source, created_at) of a suppressed address, else None."""
        with self.begin() as conn:
            return conn.execute(
                select(
                    suppressions.c.reason, suppressions.c.source, suppressions.c.created_at
                ).where(suppressions.c.email == email)
            ).first()

    def deliveries_to(self, email: str) -> list[Any]:
        """Every send batch that holds this (lower-case) address, newest edition first:
        (edition, number, state, updated_at, message_id, error).

        A scan of the snapshots, for an operator's question about one reader; the
        JSON is parsed to be sure it is the address and not a longer one containing it.
        """
        needle = json.dumps(email)
        query = (
            select(
                sends.c.edition,
                send_batches.c.number,
                send_batches.c.state,
                send_batches.c.updated_at,
                send_batches.c.message_id,
                send_batches.c.error,
                send_batches.c.recipients,
            )
            .join(sends, sends.c.id == send_batches.c.send_id)
            .where(send_batches.c.recipients.contains(needle, autoescape=True))
            .order_by(sends.c.edition.desc(), send_batches.c.number)
        )
        with self.begin() as conn:
            rows = conn.execute(query).all()
        return [row[:6] for row in rows if any(e == email for e, _ in json.loads(row.recipients))]

    def iter_subscribers(
        self, status: str | None = None, chunk: int = 5000
    ) -> Iterator[Subscriber]:
        """Every subscriber in email order, streamed in chunks (never the whole list in memory)."""
        last = ""
        while True:
            query = select(subscribers).where(subscribers.c.email > last)
            if status is not None:
                query = query.where(subscribers.c.status == status)
            with self.begin() as conn:
                rows = conn.execute(query.order_by(subscribers.c.email).limit(chunk)).all()
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last = rows[-1].email

    def deliverable(self, chunk: int = 5000) -> Iterator[Subscriber]:
        """Active subscribers with no suppression, in email order, streamed."""
        yield from self._deliverable(select(subscribers), chunk, _subscriber)

    def deliverable_recipients(
        self, chunk: int = 2000, sections: str | None = None
    ) -> Iterator[Recipient]:
        """Who a send goes to: deliverable() with only address and name, for speed.

        A send snapshots every recipient; reading just the two columns a letter
        needs (no attributes to decode) more than halves the cost per row.
        sections: only readers with this preference (lower-case, as
        deliverable_sections gives it).
        """
        query = select(subscribers.c.email, subscribers.c.name)
        if sections is not None:
            query = query.where(_preference == sections)
        yield from self._deliverable(query, chunk, Recipient._make)

    def deliverable_sections(self) -> dict[str, int]:
        """Each section preference among deliverable subscribers (lower-case), and how many."""
        with self.begin() as conn:
            rows = conn.execute(
                select(_preference, func.count())
                .outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
                .where(subscribers.c.status == "active", suppressions.c.email.is_(None))
                .group_by(_preference)
            )
            return {str(key): int(n) for key, n in rows}

    def _deliverable(self, query: Any, chunk: int, make: Any) -> Iterator[Any]:
        last = ""
        query = (
            query.outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
            # coalesce() keeps SQLite off the status index: with it, SQLite gathered
            # every active row and sorted them by email for each chunk (quadratic in
            # the list's size); walking the email index needs no sort. PostgreSQL
            # takes the email index either way.
            .where(
                func.coalesce(subscribers.c.status, "") == "active",
                suppressions.c.email.is_(None),
            )
            .order_by(subscribers.c.email)
            .limit(chunk)
        )
        while True:
            with self.begin() as conn:
                rows = conn.execute(query.where(subscribers.c.email > last)).all()
            if not rows:
                return
            for row in rows:
                yield make(row)
            last = rows[-1].email

    def count_subscribers(self) -> dict[str, int]:
        with self.begin() as conn:
            result = conn.execute(
                select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
            )
            return {status: int(n) for status, n in result}

    # -- sends and the batch ledger -------------------------------------------
    def get_send(self, edition: str) -> Any | None:
        with self.begin() as conn:
            return conn.execute(select(sends).where(sends.c.edition == edition)).first()

    def snapshot_send(self, edition: str, backend: str, batch_size: int) -> int:
        """create_send for every deliverable subscriber, done by the database.

        One INSERT ... SELECT groups the deliverable subscribers by section
        preference, numbers them by address within each, cuts them into batches
        of one preference each and writes each batch's [[email, name], ...] as
        JSON, so a million recipients never pass through Python (on SQLite 3 µs a
        recipient instead of 4.5, and no memory that grows with the list). The
        same rule as create_send: all of it or nothing.
        """
        postgres = self.dialect == "postgresql"
        with self.begin() as conn:
            send_id = self._new_send(conn, edition, backend)
            ranked = (
                select(
                    subscribers.c.email,
                    subscribers.c.name,
                    _preference.label("sections"),
                    func.row_number()
                    .over(partition_by=_preference, order_by=subscribers.c.email)
                    .label("position"),
                )
                .outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
                .where(subscribers.c.status == "active", suppressions.c.email.is_(None))
                .subquery()
            )
            # Within a preference, positions 1..1000 are its first batch, 1001..2000
            # its second, ...; batches are numbered 1, 2, ... across preferences.
            numbered = select(
                ranked.c.email,
                ranked.c.name,
                ranked.c.sections,
                func.dense_rank()
                .over(order_by=(ranked.c.sections, (ranked.c.position - 1) // batch_size))
                .label("number"),
            ).subquery()
            number = numbered.c.number
            if postgres:
                from sqlalchemy.dialects.postgresql import aggregate_order_by

                members: Any = cast(
                    func.json_agg(
                        aggregate_order_by(
                            func.json_build_array(numbered.c.email, numbered.c.name),
                            numbered.c.email,
                        )
                    ),
                    Text,
                )
            else:
                members = func.json_group_array(func.json_array(numbered.c.email, numbered.c.name))
            conn.execute(
                send_batches.insert().from_select(
                    [
                        "send_id",
                        "number",
                        "sections",
                        "state",
                        "size",
                        "recipients",
                        "attempts",
                        "updated_at",
                    ],
                    select(
                        literal(send_id),
                        number,
                        numbered.c.sections,
                        literal("pending"),
                        func.count(),
                        members,
                        literal(0),
                        literal(now(), UTCDateTime),
                    ).group_by(number, numbered.c.sections),
                )
            )
            self._count_send(conn, send_id)
        return send_id

    def _new_send(self, conn: Connection, edition: str, backend: str) -> int:
        return int(
            conn.execute(
                sends.insert().values(
                    edition=edition,
                    backend=backend,
                    state="sending",
                    recipients=0,
                    batches=0,
                    note="",
                    created_at=now(),
                    updated_at=now(),
                )
            ).inserted_primary_key[0]
        )

    def _count_send(self, conn: Connection, send_id: int) -> None:
        batches, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(send_batches.c.size), 0)).where(
                send_batches.c.send_id == send_id
            )
        ).one()
        conn.execute(
            update(sends).where(sends.c.id == send_id).values(recipients=total, batches=batches)
        )

    def create_send(self, edition: str, backend: str, batches: Iterable[list[Recipient]]) -> int:
        """Snapshot the recipients into numbered pending batches, in one transaction.

        If the process dies half-way nothing is recorded and the next attempt
        starts clean; once this returns, the snapshot is fixed.
        """
        with self.begin() as conn:
            send_id = self._new_send(conn, edition, backend)
            pending: list[dict[str, Any]] = []
            for number, recipients in enumerate(batches, start=1):
                pending.append(
                    {
                        "send_id": send_id,
                        "number": number,
                        "state": "pending",
                        "size": len(recipients),
                        # [[email, name], ...]: a Recipient is that tuple already.
                        "recipients": json.dumps(recipients, separators=(",", ":")),
                        "attempts": 0,
                        "updated_at": now(),
                    }
                )
                if len(pending) >= 10:  # ~0.5 MB of snapshot held at a time
                    conn.execute(send_batches.insert(), pending)
                    pending = []
            if pending:
                conn.execute(send_batches.insert(), pending)
            self._count_send(conn, send_id)
        return send_id

    def batch_states(self, send_id: int) -> dict[str, tuple[int, int]]:
        """state -> (batches, recipients)."""
        with self.begin() as conn:
            result = conn.execute(
                select(send_batches.c.state, func.count(), func.sum(send_batches.c.size))
                .where(send_batches.c.send_id == send_id)
                .group_by(send_batches.c.state)
            )
            return {state: (int(n), int(size or 0)) for state, n, size in result}

    def claim_batch(
        self, send_id: int, states: Sequence[str] = ("pending",), *, token: str | None = None
    ) -> Batch | None:
        """Move the lowest-numbered batch in one of `states` to `sending` and return it.

        The state change is committed before the caller talks to the mail API,
        so a crash afterwards leaves the batch visibly "in doubt". On PostgreSQL
        many workers claim concurrently with FOR UPDATE SKIP LOCKED. `token` is
        written with the claim (store_events.claimed_with finds it again).
        """
        pending = send_batches.c.state.in_(list(states))
        with self.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Lock the row we take and skip rows other workers hold, so workers
                # never wait for each other nor take the same batch.
                number = conn.scalar(
                    select(send_batches.c.number)
                    .where(send_batches.c.send_id == send_id, pending)
                    .order_by(send_batches.c.number)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if number is None:
                    return None
            else:
                # SQLite has one writer at a time: choosing and taking the batch in
                # one UPDATE makes the claim atomic. (A SELECT, then an UPDATE that
                # finds the batch gone, would leave this connection holding the
                # write lock while it tried again.)
                number = (
                    select(func.min(send_batches.c.number))
                    .where(send_batches.c.send_id == send_id, pending)
                    .scalar_subquery()
                )
            row = conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.number == number, pending)
                .values(
                    state="sending",
                    attempts=send_batches.c.attempts + 1,
                    updated_at=now(),
                    claim=token,
                )
                .returning(
                    send_batches.c.number,
                    send_batches.c.recipients,
                    send_batches.c.attempts,
                    send_batches.c.sections,
                )
            ).first()
        return None if row is None else claimed_batch(send_id, row)

    def send_sections(self, send_id: int) -> list[str]:
        """The section preferences a send's batches were cut by ("" = none)."""
        with self.begin() as conn:
            return sorted(
                conn.scalars(
                    select(send_batches.c.sections)
                    .where(send_batches.c.send_id == send_id)
                    .distinct()
                )
            )

    def claimed_since(self, send_id: int, since: datetime) -> list[int]:
        """Batches still `sending` that were claimed at or after `since`: in flight
        with some worker, if it is alive."""
        with self.begin() as conn:
            return list(
                conn.scalars(
                    select(send_batches.c.number).where(
                        send_batches.c.send_id == send_id,
                        send_batches.c.state == "sending",
                        send_batches.c.updated_at >= since,
                    )
                )
            )

    def requeue_batches(self, send_id: int, states: Sequence[str]) -> int:
        """Put batches in these states back to pending. Returns how many recipients."""
        with self.begin() as conn:
            size = conn.scalar(
                select(func.sum(send_batches.c.size)).where(
                    send_batches.c.send_id == send_id, send_batches.c.state.in_(list(states))
                )
            )
            conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.state.in_(list(states)))
                .values(state="pending", updated_at=now())
            )
        return int(size or 0)

    def finish_batch(
        self,
        send_id: int,
        number: int,
        state: str,
        *,
        response_code: int | None = None,
        message_id: str | None = None,
        error: str | None = None,
        attempts: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "response_code": response_code,
            "message_id": message_id,
            "error": error,
            "updated_at": now(),
        }
        if attempts is not None:  # API calls made, retries included (the claim counts one)
            values["attempts"] = attempts
        with self.begin() as conn:
            conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == send_id, send_batches.c.number == number)
                .values(**values)
            )

    def set_send_state(self, send_id: int, state: str, note: str = "") -> None:
        with self.begin() as conn:
            conn.execute(
                update(sends)
                .where(sends.c.id == send_id)
                .values(state=state, note=note, updated_at=now())
            )

    def failed_batches(self, send_id: int) -> list[Any]:
        with self.begin() as conn:
            return conn.execute(
                select(
                    send_batches.c.number,
                    send_batches.c.size,
                    send_batches.c.state,
                    send_batches.c.attempts,
                    send_batches.c.response_code,
                    send_batches.c.error,
                    send_batches.c.updated_at,
                )
                .where(
                    send_batches.c.send_id == send_id,
                    send_batches.c.state.in_(["failed", "sending"]),
                )
                .order_by(send_batches.c.number)
            ).all()

    def refusals(self, send_id: int) -> list[Any]:
        """Sent batches of which the server refused some recipients: (number, error)."""
        with self.begin() as conn:
            return conn.execute(
                select(send_batches.c.number, send_batches.c.error)
                .where(
                    send_batches.c.send_id == send_id,
                    send_batches.c.state == "sent",
                    send_batches.c.error.is_not(None),
                )
                .order_by(send_batches.c.number)
            ).all()

    def send_by_id(self, send_id: int) -> Any:
        with self.begin() as conn:
            return conn.execute(select(sends).where(sends.c.id == send_id)).one()

    def list_sends(self) -> list[Any]:
        with self.begin() as conn:
            return conn.execute(select(sends).order_by(sends.c.edition.desc())).all()

    # -- scheduling ---------------------------------------------------------------
    # Queries for digest/schedule/: the job_runs record (one row per job and fire
    # time, runner.py) and the single-active-scheduler lease (leases.py).

    def claim_job_run(
        self,
        job: str,
        fire_time: datetime,
        holder: str,
        *,
        state: str = "running",
        detail: str = "",
        resumable: Sequence[str] = ("stopped", "interrupted"),
        max_starts: int = 2,
    ) -> bool:
        """Record that `holder` takes this job's fire time; False if it is someone else's.

        A new fire time is inserted; one left `resumable` by a scheduler that stopped
        or died is taken over if it has been started fewer than `max_starts` times.
        Anything else (done, failed, held, running) is never taken again: the primary
        key and the conditional update make this atomic on SQLite and PostgreSQL.
        """
        finished = None if state == "running" else now()
        with self.begin() as conn:
            insert = (
                _insert_for(conn, job_runs)
                .values(
                    job=job,
                    fire_time=fire_time,
                    state=state,
                    detail=detail,
                    holder=holder,
                    starts=1,
                    started_at=now(),
                    finished_at=finished,
                )
                .on_conflict_do_nothing(index_elements=["job", "fire_time"])
                # RETURNING, not rowcount: psycopg reports -1 for an INSERT here.
                .returning(job_runs.c.job)
            )
            if conn.execute(insert).first() is not None:
                return True
            taken = conn.execute(
                update(job_runs)
                .where(
                    job_runs.c.job == job,
                    job_runs.c.fire_time == fire_time,
                    job_runs.c.state.in_(list(resumable)),
                    job_runs.c.starts < max_starts,
                )
                .values(
                    state=state,
                    detail=detail,
                    holder=holder,
                    starts=job_runs.c.starts + 1,
                    started_at=now(),
                    finished_at=finished,
                )
            ).rowcount
            return taken == 1

    def finish_job_run(
        self, job: str, fire_time: datetime, holder: str, state: str, detail: str
    ) -> bool:
        """Record a run's outcome. False if another scheduler has since taken the row over."""
        with self.begin() as conn:
            return (
                conn.execute(
                    update(job_runs)
                    .where(
                        job_runs.c.job == job,
                        job_runs.c.fire_time == fire_time,
                        job_runs.c.holder == holder,
                    )
                    .values(state=state, detail=detail, finished_at=now())
                ).rowcount
                == 1
            )

    def job_run(self, job: str, fire_time: datetime) -> Any | None:
        with self.begin() as conn:
            return conn.execute(
                select(job_runs).where(job_runs.c.job == job, job_runs.c.fire_time == fire_time)
            ).first()

    def last_job_run(self, job: str) -> Any | None:
        """The run with the newest fire time for this job, if it ever ran here."""
        with self.begin() as conn:
            return conn.execute(
                select(job_runs)
                .where(job_runs.c.job == job)
                .order_by(job_runs.c.fire_time.desc())
                .limit(1)
            ).first()

    def list_job_runs(self, job: str | None = None) -> list[Any]:
        """Every recorded run (of one job), oldest fire time first."""
        query = select(job_runs).order_by(job_runs.c.fire_time, job_runs.c.job)
        if job is not None:
            query = query.where(job_runs.c.job == job)
        with self.begin() as conn:
            return conn.execute(query).all()

    def interrupt_job_runs(self, holder: str) -> list[Any]:
        """Mark runs other schedulers left `running` as `interrupted`; return them.

        Called by a scheduler that has just become the only active one, so any other
        holder's running row belongs to a scheduler that died mid-job.
        """
        with self.begin() as conn:
            return conn.execute(
                update(job_runs)
                .where(job_runs.c.state == "running", job_runs.c.holder != holder)
                .values(state="interrupted", finished_at=now())
                .returning(job_runs.c.job, job_runs.c.fire_time, job_runs.c.holder)
            ).all()

    def take_lease(self, name: str, holder: str, ttl: timedelta, *, force: bool = False) -> bool:
        """Take or keep the lease `name` for `ttl` if it is free, expired or already ours.

        One INSERT ... ON CONFLICT DO UPDATE ... WHERE, so two schedulers racing for
        an expired lease cannot both win. `force` records the holder unconditionally
        (on PostgreSQL the advisory lock has already decided).
        """
        at = now()
        if not force:
            current = self.lease(name)
            if current is not None and current.holder != holder and current.expires_at > at:
                return False  # held and alive: no need to write
        with self.begin() as conn:
            stmt = _insert_for(conn, scheduler_lease).values(
                name=name, holder=holder, acquired_at=at, expires_at=at + ttl
            )
            ours = scheduler_lease.c.holder == stmt.excluded.holder
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "holder": stmt.excluded.holder,
                    "acquired_at": case(
                        (ours, scheduler_lease.c.acquired_at), else_=stmt.excluded.acquired_at
                    ),
                    "expires_at": stmt.excluded.expires_at,
                },
                where=None
                if force
                else or_(ours, scheduler_lease.c.expires_at < stmt.excluded.acquired_at),
            )
            return conn.execute(stmt.returning(scheduler_lease.c.holder)).first() is not None

    def renew_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Push our lease's expiry on. False if it is no longer ours."""
        with self.begin() as conn:
            return (
                conn.execute(
                    update(scheduler_lease)
                    .where(scheduler_lease.c.name == name, scheduler_lease.c.holder == holder)
                    .values(expires_at=now() + ttl)
                ).rowcount
                == 1
            )

    def release_lease(self, name: str, holder: str) -> None:
        """Let the lease expire now, so a standby takes over at its next check."""
        with self.begin() as conn:
            conn.execute(
                update(scheduler_lease)
                .where(scheduler_lease.c.name == name, scheduler_lease.c.holder == holder)
                .values(expires_at=now() - timedelta(seconds=1))
            )

    def lease(self, name: str) -> Any | None:
        with self.begin() as conn:
            return conn.execute(
                select(scheduler_lease).where(scheduler_lease.c.name == name)
            ).first()

    def lock_connection(self) -> Connection:
        """A connection of its own, in autocommit, for a session-level advisory lock.

        PostgreSQL keeps such a lock until the session ends, so this connection is
        held for the life of the scheduler; autocommit keeps it from sitting
        "idle in transaction" for days.
        """
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _advisory_key(conn: Connection, name: str) -> int:
        # Advisory locks are database-wide, so the key also names the database and
        # schema: newsrooms (or tests) in other schemas never block each other.
        database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        digest = hashlib.sha256(f"digest:{database}:{schema}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def try_advisory_lock(self, conn: Connection, name: str) -> bool:
        """pg_try_advisory_lock on `conn`: True if this session now holds the lock."""
        key = self._advisory_key(conn, name)
        return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())

    def advisory_unlock(self, conn: Connection, name: str) -> None:
        key = self._advisory_key(conn, name)
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
