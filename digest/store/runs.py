"""Job runs, the scheduler's lease and advisory locks.

The job_runs and scheduler_lease tables, and PostgreSQL's advisory locks: which
scheduled run fired and how it ended, and which scheduler holds the lease.
Queries for digest/schedule/: the job_runs record (one row per job and fire
time, runner.py) and the single-active-scheduler lease (leases.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    case,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from digest.store.tables import (
    Aggregate,
    _insert_for,
    job_runs,
    now,
    scheduler_lease,
)


class Runs(Aggregate):
    """The queries of job runs, the scheduler's lease and advisory locks: `store.runs`."""

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
