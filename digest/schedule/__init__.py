"""Schedule: cron.yaml → APScheduler jobs, fired once per fire time by one active scheduler.

The pieces, in the order a fire time meets them, one module each:

- `cron_yaml`: `load` reads cron.yaml: the newsroom's time zone and named jobs, each
  a crontab(5) line and an action (collect, draft, preview, send, run) with its
  grace, retries and, for a send, the approval policy.
- `crontab`: `CrontabTrigger` turns a crontab line into fire times with crontab's
  meaning, not APScheduler's: weekdays count from Sunday = 0 (APScheduler 3 counts
  from Monday), day-of-month and day-of-week restricted together mean either, and
  daylight-saving changes follow cron(8) (see the class).
- `leases`: a `Lease` makes exactly one `digest schedule` active: a PostgreSQL
  advisory lock, or a heartbeat row on SQLite. The others wait as standbys and take
  over when the active one dies. APScheduler 3 must never share a job store between
  schedulers (it would run every job twice), so each process keeps its jobs in
  memory and only the lease holder starts its scheduler.
- `runner`: `Runner` fires a job: it records (job, fire time) in job_runs first, so
  the same fire time never runs twice even across a takeover; applies the catch-up
  rules; retries; and mails the operators about failed and held sends (`operators`).
- `service`: `serve` and `run`, the `digest schedule` process that holds it all
  together: standby, then active, until SIGTERM or Ctrl-C.

Callers import from here (`from digest.schedule import load, Runner`). Inside, the
imports run one way: `crontab` imports none of the others; `cron_yaml` builds its
triggers; `runner` reads `cron_yaml`'s jobs and tells the `operators`; `service`
puts the `runner` and the `leases` together, and nothing imports `service`.
"""

from digest.schedule.cron_yaml import (
    ACTIONS,
    APPROVAL_POLICIES,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    DEFAULT_SEND_GRACE,
    DEFAULT_STANDBY_INTERVAL,
    MIN_STANDBY_INTERVAL,
    SENDING_ACTIONS,
    TEST_SECONDS_ENV,
    CronJob,
    Schedule,
    describe_upcoming,
    load,
    upcoming,
)
from digest.schedule.crontab import CrontabTrigger
from digest.schedule.leases import LEASE_NAME, AdvisoryLease, Lease, RowLease, make_lease
from digest.schedule.operators import Alert, mail_operators
from digest.schedule.runner import MAX_STARTS, Clock, Outcome, Runner
from digest.schedule.service import run, serve

__all__ = [
    "ACTIONS",
    "APPROVAL_POLICIES",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_DELAY",
    "DEFAULT_SEND_GRACE",
    "DEFAULT_STANDBY_INTERVAL",
    "LEASE_NAME",
    "MAX_STARTS",
    "MIN_STANDBY_INTERVAL",
    "SENDING_ACTIONS",
    "TEST_SECONDS_ENV",
    "AdvisoryLease",
    "Alert",
    "Clock",
    "CronJob",
    "CrontabTrigger",
    "Lease",
    "Outcome",
    "RowLease",
    "Runner",
    "Schedule",
    "describe_upcoming",
    "load",
    "mail_operators",
    "make_lease",
    "run",
    "serve",
    "upcoming",
]
