"""The leases: exactly one `digest schedule` per database is active.

A `Lease` is a PostgreSQL advisory lock (`AdvisoryLease`), or a heartbeat row on
SQLite (`RowLease`). The other processes wait as standbys and take over when the
active one dies. APScheduler 3 must never share a job store between schedulers (it
would run every job twice), so each process keeps its jobs in memory and only the
lease holder starts its scheduler (`digest.schedule.service`).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta
from typing import Protocol

from sqlalchemy.engine import Connection

from digest.store import Store

# One logger for the whole scheduler, as before the split: its lines are `digest.schedule`.
log = logging.getLogger("digest.schedule")

LEASE_NAME = "scheduler"


class Lease(Protocol):
    """The right to be the one active scheduler for a database."""

    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str: ...


def _lease_holder(store: Store) -> str:
    row = store.runs.lease(LEASE_NAME)
    return f"{row.holder} (active since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC)" if row else "?"


class RowLease:
    """SQLite: a row with a holder and an expiry, renewed by heartbeat.

    SQLite has no session locks another process can see die, so the lease lapses
    unless renewed; a standby takes it once it has expired.
    """

    def __init__(self, store: Store, me: str, ttl: timedelta) -> None:
        self.store, self.me, self.ttl = store, me, ttl

    def acquire(self) -> bool:
        try:
            return self.store.runs.take_lease(LEASE_NAME, self.me, self.ttl)
        except Exception as exc:  # locked or unreadable: stay standby and try again
            log.warning("could not check the scheduler lease: %s", exc)
            return False

    def renew(self) -> bool:
        try:
            return self.store.runs.renew_lease(LEASE_NAME, self.me, self.ttl)
        except Exception as exc:
            # Not renewed in time, the lease may lapse and a standby take over: stop
            # scheduling rather than risk two active schedulers.
            log.error("could not renew the scheduler lease: %s", exc)
            return False

    def release(self) -> None:
        with suppress(Exception):  # it lapses by itself anyway
            self.store.runs.release_lease(LEASE_NAME, self.me)

    def holder(self) -> str:
        return _lease_holder(self.store)


class AdvisoryLease:
    """PostgreSQL: pg_try_advisory_lock on a connection held for the life of the process.

    PostgreSQL frees the lock the moment that session ends, however the process
    died, so no expiry is needed; the lease row is only a note of who holds it.
    """

    def __init__(self, store: Store, me: str, ttl: timedelta) -> None:
        self.store, self.me, self.ttl = store, me, ttl
        self._conn: Connection | None = None
        self._held = False

    def acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self.store.runs.lock_connection()
            self._held = self.store.runs.try_advisory_lock(self._conn, LEASE_NAME)
            if self._held:
                self.store.runs.take_lease(LEASE_NAME, self.me, self.ttl, force=True)
        except Exception as exc:  # the database is away: stay standby and try again
            log.warning("could not reach the database for the scheduler lock: %s", exc)
            self._drop()
            return False
        return self._held

    def renew(self) -> bool:
        try:
            assert self._conn is not None
            # The lock lives as long as this session: check the session is alive.
            self._conn.exec_driver_sql("SELECT 1")
            self.store.runs.take_lease(LEASE_NAME, self.me, self.ttl, force=True)
            return True
        except Exception as exc:
            log.error("lost the connection that holds the scheduler lock: %s", exc)
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None and self._held:
            try:
                self.store.runs.advisory_unlock(self._conn, LEASE_NAME)
                self.store.runs.release_lease(LEASE_NAME, self.me)
            except Exception as exc:
                log.warning("could not release the scheduler lock cleanly: %s", exc)
        self._drop()

    def holder(self) -> str:
        return _lease_holder(self.store)

    def _drop(self) -> None:
        if self._conn is not None:
            # Invalidate, not just close: a pooled connection would go back to the pool
            # with its session, and the lock, still alive.
            with suppress(Exception):  # a connection that already broke may fail to close
                self._conn.invalidate()
                self._conn.close()
        self._conn, self._held = None, False


def make_lease(store: Store, me: str, interval: float) -> Lease:
    """The lease for this store; `interval` is how soon a standby must take over."""
    # A SQLite lease lives half the interval and is renewed every quarter, and a
    # standby checks every quarter: a dead holder's lease lapses within half the
    # interval and is taken within three quarters of it.
    ttl = timedelta(seconds=interval / 2)
    if store.dialect == "postgresql":
        return AdvisoryLease(store, me, ttl)
    return RowLease(store, me, ttl)
