"""`digest schedule` as a process: a standby until it holds the lease, then the active scheduler.

`serve` waits for the lease (`digest.schedule.leases`); while it holds it, one
APScheduler `BackgroundScheduler` fires each job through a `Runner`, and a catch-up
runs once right away. `run` is the command: it adds the signal handling (SIGTERM or
Ctrl-C stops cleanly, a second one aborts) and sends APScheduler's own warnings
where ours go.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from digest.config import Settings
from digest.errors import ConfigError
from digest.schedule.cron_yaml import MIN_STANDBY_INTERVAL, TEST_SECONDS_ENV, Schedule
from digest.schedule.leases import Lease, make_lease
from digest.schedule.operators import Alert
from digest.schedule.runner import Runner
from digest.store import Store

# One logger for the whole scheduler, as before the split: its lines are `digest.schedule`.
log = logging.getLogger("digest.schedule")


def serve(
    settings: Settings,
    store: Store,
    schedule: Schedule,
    *,
    stop: threading.Event,
    standby_interval: float | None = None,
    alert: Alert | None = None,
) -> None:
    """Wait as a standby until this process holds the lease, then schedule until `stop`."""
    interval = standby_interval or schedule.standby_interval
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    lease = make_lease(store, me, interval)
    if schedule.test_seconds:
        log.warning(
            "%s=%s is set: jobs fire every few seconds (TEST ONLY)",
            TEST_SECONDS_ENV,
            schedule.test_seconds,
        )
    waiting = False
    try:
        while not stop.is_set():
            if lease.acquire():
                waiting = False
                _schedule_while_active(settings, store, schedule, me, lease, stop, interval, alert)
                continue
            if not waiting:
                log.info(
                    "standby (%s): %s is active; taking over within %ss of it stopping",
                    me,
                    lease.holder(),
                    f"{interval:g}",
                )
                waiting = True
            stop.wait(interval / 4)
    finally:
        lease.release()
    log.info("scheduler %s stopped", me)


def _schedule_while_active(
    settings: Settings,
    store: Store,
    schedule: Schedule,
    me: str,
    lease: Lease,
    stop: threading.Event,
    interval: float,
    alert: Alert | None,
) -> None:
    halt = threading.Event()
    runner = Runner(settings, store, schedule, holder=me, halt=halt, alert=alert)
    scheduler = BackgroundScheduler(
        timezone=schedule.zone,
        executors={"default": ThreadPoolExecutor(max_workers=len(schedule.jobs) + 1)},
        # misfire_grace_time None: APScheduler runs late jobs and Runner.fire decides
        # (hold a late send, alert); coalesce: after a pause, one run, never a burst.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    for job in schedule.jobs:
        scheduler.add_job(
            runner.fire_due, trigger=job.trigger, args=[job], id=job.name, name=job.name
        )
    scheduler.add_job(runner.catch_up, id="catch-up", name="catch-up")  # once, right away
    scheduler.add_listener(runner.on_max_instances, EVENT_JOB_MAX_INSTANCES)
    count = len(schedule.jobs)
    log.info("active (%s): %d job%s from %s", me, count, "s" if count > 1 else "", schedule.path)
    for job in schedule.jobs:
        upcoming_at = job.trigger.next_fire_time(datetime.now(UTC))
        log.info(
            "%s: %s at '%s'; next run %s",
            job.name,
            job.action,
            job.cron,
            runner.when(upcoming_at) if upcoming_at else "never",
        )
    scheduler.start()
    try:
        while not stop.wait(interval / 4):
            if not lease.renew():
                log.error("no longer the active scheduler (lease lost); going back to standby")
                break
    finally:
        halt.set()  # a running send finishes the batch in flight, then returns
        scheduler.shutdown(wait=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT: stop scheduling, let running jobs finish their step; twice: abort."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.error(
                "second %s: aborting now; a batch in flight is left in doubt",
                signal.Signals(signum).name,
            )
            os._exit(128 + signum)
        log.info(
            "%s: stopping; running jobs finish their current step (a send, its batch)",
            signal.Signals(signum).name,
        )
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(
    settings: Settings,
    store: Store,
    schedule: Schedule,
    *,
    standby_interval: float | None = None,
) -> None:
    """`digest schedule`: run as the active scheduler or a standby until SIGTERM/SIGINT."""
    if standby_interval is not None and standby_interval < MIN_STANDBY_INTERVAL:
        raise ConfigError(f"--standby-interval must be at least {MIN_STANDBY_INTERVAL:g} seconds")
    # APScheduler's own warnings (a job still running at its next fire time, say) go
    # where ours go, one line each, instead of to Python's last-resort handler.
    apscheduler_log = logging.getLogger("apscheduler")
    apscheduler_log.handlers = list(logging.getLogger("digest").handlers)
    apscheduler_log.setLevel(logging.WARNING)
    apscheduler_log.propagate = False
    stop = threading.Event()
    with _stop_on_signals(stop):
        serve(settings, store, schedule, stop=stop, standby_interval=standby_interval)
