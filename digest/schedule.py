"""Schedule: cron.yaml → APScheduler jobs, fired once per fire time by one active scheduler.

The pieces, in the order a fire time meets them:

- `load` reads cron.yaml: the newsroom's time zone and named jobs, each a crontab(5)
  line and an action (collect, draft, send, run) with its grace, retries and, for a
  send, the approval policy.
- `CrontabTrigger` turns a crontab line into fire times with crontab's meaning, not
  APScheduler's: weekdays count from Sunday = 0 (APScheduler 3 counts from Monday),
  day-of-month and day-of-week restricted together mean either, and daylight-saving
  changes follow cron(8) (see the class).
- A `Lease` makes exactly one `digest schedule` active: a PostgreSQL advisory lock,
  or a heartbeat row on SQLite. The others wait as standbys and take over when the
  active one dies. APScheduler 3 must never share a job store between schedulers
  (it would run every job twice), so each process keeps its jobs in memory and only
  the lease holder starts its scheduler.
- `Runner` fires a job: it records (job, fire time) in job_runs first, so the same
  fire time never runs twice even across a takeover; applies the catch-up rules;
  retries; and mails the operators about failed and held sends.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Connection

from digest import jobs
from digest.config import Settings
from digest.errors import ConfigError, DigestError, InputError, SendError
from digest.send import notice_for, send_now
from digest.send.ledger import SendReport
from digest.store import Store

log = logging.getLogger("digest.schedule")

ACTIONS = ("collect", "draft", "preview", "send", "run")
#: Actions that mail readers: a late one is held, a failed or held one is mailed to operators.
SENDING_ACTIONS = frozenset({"send", "run"})
APPROVAL_POLICIES = ("auto", "approved")
DEFAULT_SEND_GRACE = timedelta(minutes=30)
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = timedelta(minutes=1)
DEFAULT_STANDBY_INTERVAL = 30.0  # seconds
MIN_STANDBY_INTERVAL = 1.0
#: A run cut short (scheduler stopped or died) is resumed once, never more: a job that
#: kills its scheduler every time must not do so forever.
MAX_STARTS = 2
LEASE_NAME = "scheduler"
#: TEST ONLY. A crontab seconds field ("*/2") added to every job, so a test can watch
#: two real `digest schedule` processes fire many times in a few seconds. Crontab has
#: no seconds; never set this in production.
TEST_SECONDS_ENV = "DIGEST_SCHEDULE_TEST_SECONDS"

_TOP_KEYS = ("time_zone", "standby_interval", "jobs")
_JOB_KEYS = ("cron", "action", "misfire_grace", "retries", "retry_delay", "approval")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?$")


# -- crontab ------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab(5): Sunday = 0 (and 7)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ELEMENT = re.compile(r"^(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?$")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_CRON_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)
_SECOND = _Field("second", 0, 59)


def _field_values(text: str, spec: _Field) -> set[int]:
    """Expand one crontab field ("1-5", "*/15", "mon,wed") to its values, or say what is wrong."""
    values: set[int] = set()
    for element in text.lower().split(","):
        match = _ELEMENT.match(element)
        if not match:
            raise ValueError(f"{spec.name} {text!r}: {element!r} is not a value, range or step")
        star, first, last, step = match.groups()
        if star:
            # "*" in day of week is 0-6: 7 is only another name for Sunday.
            start, end = spec.low, min(spec.high, 6) if spec is _CRON_FIELDS[4] else spec.high
        else:
            start = _field_value(first, spec, text)
            end = start if last is None else _field_value(last, spec, text)
            if last == "sun" and end < start:
                end = 7  # "fri-sun": Sunday as 7, the end of the week
            if end < start:
                raise ValueError(f"{spec.name} {text!r}: range {element!r} runs backwards")
            if step is not None and last is None:
                raise ValueError(
                    f"{spec.name} {text!r}: a step needs a range or *, "
                    f"for example {first}-{spec.high}/{step}"
                )
        stride = 1 if step is None else int(step)
        if stride < 1:
            raise ValueError(f"{spec.name} {text!r}: the step must be at least 1")
        values.update(range(start, end + 1, stride))
    return values


def _field_value(token: str, spec: _Field, text: str) -> int:
    if token.isdigit():
        value = int(token)
    elif token in spec.names:
        value = spec.names.index(token) + spec.name_base
    else:
        hint = f" or a name ({', '.join(spec.names[:3])}, ...)" if spec.names else ""
        raise ValueError(f"{spec.name} {text!r}: {token!r} is not a number{hint}")
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{spec.name} {text!r}: {value} is out of range {spec.low}-{spec.high}")
    return value


def _as_apscheduler(values: set[int], text: str) -> str:
    return "*" if text == "*" else ",".join(str(v) for v in sorted(values))


class CrontabTrigger(BaseTrigger):
    """A crontab(5) line as an APScheduler trigger, in one time zone, with crontab's meaning.

    - Day of week: 0 and 7 are Sunday, names allowed ("1-5" is Monday to Friday).
      APScheduler 3 numbers weekdays from Monday = 0, so `CronTrigger.from_crontab`
      would run "1-5" Tuesday to Saturday; we pass it weekday names instead.
    - Day of month and day of week both restricted (neither starts with "*"): the job
      runs when either matches, as crontab(5) says; APScheduler would need both.
    - Daylight saving, as cron(8) describes it: a job at a fixed time (no "*" in its
      minute or hour) whose time is skipped when clocks spring forward runs once,
      when the clocks jump (a 02:30 job runs at 03:00 in America/Juneau); one in the
      repeated hour when clocks fall back runs once, at the first occurrence. Jobs
      with "*" in the minute or hour run by elapsed time: every 30 minutes stays
      every 30 real minutes through both changes.
    """

    __slots__ = ("_crons", "_fixed_time", "expression", "zone")

    def __init__(self, expression: str, zone: tzinfo, *, second: str = "0") -> None:
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"{expression!r} has {len(parts)} fields; a crontab line has 5: "
                "minute hour day-of-month month day-of-week, e.g. '0 6 * * 1-5'"
            )
        minute, hour, dom, month, dow = parts
        values = [_field_values(t, f) for t, f in zip(parts, _CRON_FIELDS, strict=True)]
        seconds = _as_apscheduler(_field_values(second, _SECOND), second)
        weekdays = {v % 7 for v in values[4]}
        dom_restricted = not dom.startswith("*")
        dow_restricted = not dow.startswith("*")
        if (
            dom_restricted
            and not dow_restricted
            and not any(day <= _DAYS_IN_MONTH[m - 1] for m in values[3] for day in values[2])
        ):
            raise ValueError(f"{expression!r} never fires: no such day in those months")
        common: dict[str, Any] = {
            "second": seconds,
            "minute": _as_apscheduler(values[0], minute),
            "hour": _as_apscheduler(values[1], hour),
            "month": _as_apscheduler(values[3], month),
            "timezone": zone,
        }
        day = _as_apscheduler(values[2], dom)
        day_of_week = "*" if dow == "*" else ",".join(_WEEKDAYS[d] for d in sorted(weekdays))
        if dom_restricted and dow_restricted:
            self._crons: tuple[CronTrigger, ...] = (
                CronTrigger(day=day, day_of_week="*", **common),
                CronTrigger(day="*", day_of_week=day_of_week, **common),
            )
        else:
            self._crons = (CronTrigger(day=day, day_of_week=day_of_week, **common),)
        self._fixed_time = not minute.startswith("*") and not hour.startswith("*")
        self.expression = expression
        self.zone = zone

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return self.next_fire_time(now)
        # Strictly after the previous one, even if `now` is earlier (a clock set back),
        # so a fire time is never handed out twice.
        return self.fire_time_after(previous_fire_time)

    def next_fire_time(self, start: datetime) -> datetime | None:
        """The first fire time at or after `start`, in UTC.

        UTC, not local time, because a local time in a repeated hour compares unequal
        to every time in another zone (PEP 495), which would break lookups by fire time.
        """
        found = [t for t in (self._next_from(c, start.astimezone(UTC)) for c in self._crons) if t]
        return min(found) if found else None

    def _next_from(self, cron: CronTrigger, start: datetime) -> datetime | None:
        while True:
            wall = cron.get_next_fire_time(None, start.astimezone(self.zone))
            if wall is None:
                return None
            instant = wall.astimezone(UTC)
            if self._fixed_time:
                if instant.astimezone(self.zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                    # Skipped by the spring-forward jump: run when the clocks jump.
                    return _gap_end(wall, self.zone)
                if wall.fold == 1 and wall.utcoffset() != wall.replace(fold=0).utcoffset():
                    # The repeat of a fall-back hour: it already ran the first time.
                    start = instant + timedelta(microseconds=1)
                    continue
            return instant

    def previous_fire_time(self, now: datetime) -> datetime | None:
        """The latest fire time at or before `now`: the one a job started now belongs to."""
        now = now.astimezone(UTC)
        for window in _LOOKBACK:
            first = self.next_fire_time(now - window)
            if first is None or first > now:
                continue
            latest = first
            while (following := self.fire_time_after(latest)) is not None and following <= now:
                latest = following
            return latest
        return None

    def fire_times(self, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
        """Fire times in (after, until], at most `limit` of them."""
        found: list[datetime] = []
        current = self.fire_time_after(after)
        while current is not None and current <= until and len(found) < limit:
            found.append(current)
            current = self.fire_time_after(current)
        return found

    def fire_time_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment`."""
        # In UTC: adding to a local time in a repeated hour would lose which one it was.
        return self.next_fire_time(moment.astimezone(UTC) + timedelta(microseconds=1))

    def __str__(self) -> str:
        return f"crontab[{self.expression}]"


# How far back previous_fire_time looks, widening until it finds a fire time; the
# last covers "29 2 *" (29 February), which can be eight years away.
_LOOKBACK = tuple(
    timedelta(**kw)
    for kw in (
        {"minutes": 2},
        {"hours": 2},
        {"days": 2},
        {"days": 8},
        {"days": 32},
        {"days": 367},
        {"days": 8 * 366},
    )
)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """The instant the clocks jump forward over `wall`, a local time that does not exist.

    PEP 495: in a gap, fold=0 reads the time with the offset before the jump and
    fold=1 with the offset after, so the jump lies between those two instants;
    zoneinfo does not expose transitions, so bisect for it (a dozen steps).
    """
    before = int(wall.replace(fold=1).timestamp())
    after = int(wall.replace(fold=0).timestamp())
    low, high = min(before, after), max(before, after)
    offset_after = datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# -- cron.yaml ----------------------------------------------------------------------


@dataclass(frozen=True)
class CronJob:
    """One named job from cron.yaml."""

    name: str
    cron: str
    action: str
    trigger: CrontabTrigger
    misfire_grace: timedelta | None  # None: late runs always run (collect, draft)
    retries: int
    retry_delay: timedelta
    approval: str = "auto"  # send only: auto | approved

    @property
    def sends(self) -> bool:
        return self.action in SENDING_ACTIONS


@dataclass(frozen=True)
class Schedule:
    """cron.yaml, checked: when each job runs, in the newsroom's time zone."""

    path: Path
    time_zone: str
    jobs: tuple[CronJob, ...]
    standby_interval: float = DEFAULT_STANDBY_INTERVAL
    test_seconds: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def find(self, name: str) -> CronJob | None:
        return next((j for j in self.jobs if j.name == name), None)

    def job(self, name: str) -> CronJob:
        found = self.find(name)
        if found is None:
            raise KeyError(f"no job {name!r} in {self.path}")
        return found


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a job written twice is a mistake to report."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _unique_mapping,  # type: ignore[arg-type]
)


def _duration(value: Any, where: str) -> timedelta:
    """30m, 2h, 1h30m, 90s, or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip().lower())
        if match and any(match.groups()):
            hours, minutes, seconds = (int(g or 0) for g in match.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    raise ConfigError(f"{where} {value!r} is not a duration; use e.g. 30m, 2h, 1h30m or 90s")


def load(path: Path, settings: Settings) -> Schedule:
    """Read and check cron.yaml. Every problem is one ConfigError naming file, job and field."""
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file; `digest schedule` reads the jobs from it "
            "(copy cron.yaml from the repository, see docs/scheduling.md)"
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        hint = ""
        if "alias" in f"{getattr(exc, 'context', '')} {problem}":
            hint = ' (quote crontab lines that start with "*": cron: "*/15 * * * *")'
        raise ConfigError(f"{path}:{where} not valid YAML: {problem}{hint}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:  # a folder, or a file we may not read
        raise ConfigError(
            f"{path}: cannot read the schedule ({exc.strerror}); name the cron.yaml file "
            "in [schedule] file of digest.toml"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping with time_zone and jobs (see cron.yaml)")
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; expected {', '.join(_TOP_KEYS)}")

    time_zone = raw.get("time_zone", settings.newsroom.time_zone)
    if not isinstance(time_zone, str):
        raise ConfigError(f"{path}: time_zone must be an IANA name such as America/Juneau")
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: time_zone {time_zone!r} is not an IANA time zone "
            "(for example America/Juneau or Europe/London)"
        ) from None

    interval = _duration(
        raw.get("standby_interval", DEFAULT_STANDBY_INTERVAL), f"{path}: standby_interval"
    ).total_seconds()
    if interval < MIN_STANDBY_INTERVAL:
        raise ConfigError(f"{path}: standby_interval must be at least {MIN_STANDBY_INTERVAL:g}s")

    test_seconds = settings.env.get(TEST_SECONDS_ENV, "")
    entries = raw.get("jobs")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: jobs must map job names to their settings (see cron.yaml)")
    loaded = tuple(
        _load_job(path, name, entry, zone, test_seconds) for name, entry in entries.items()
    )
    previews = [job.name for job in loaded if job.action == "preview"]
    if previews and not settings.sender.editors:
        raise ConfigError(
            f"{path}: job {previews[0]!r}: a preview job mails the coming edition to the "
            f'editors, and {settings.path} has none: add [sender] editors = ["you@..."]'
        )
    if time_zone != settings.newsroom.time_zone:
        log.warning(
            "%s: time_zone %s differs from digest.toml's %s; jobs fire in %s, "
            "editions are named by the date in %s",
            path,
            time_zone,
            settings.newsroom.time_zone,
            time_zone,
            settings.newsroom.time_zone,
        )
    return Schedule(
        path=path,
        time_zone=time_zone,
        jobs=loaded,
        standby_interval=interval,
        test_seconds=test_seconds,
    )


def _load_job(path: Path, name: Any, entry: Any, zone: ZoneInfo, test_seconds: str) -> CronJob:
    if not isinstance(name, str) or not _JOB_NAME.match(name):
        raise ConfigError(
            f"{path}: job name {name!r} must be letters, digits, '-', '_' or '.' (up to 100)"
        )
    where = f"{path}: job {name!r}:"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with cron and action")
    for key in entry:
        if key not in _JOB_KEYS:
            raise ConfigError(f"{where} unknown field {key!r}; expected {', '.join(_JOB_KEYS)}")

    action = entry.get("action")
    if action not in ACTIONS:
        got = "missing" if action is None else f"{action!r}"
        raise ConfigError(f"{where} action is {got}; it must be one of {', '.join(ACTIONS)}")

    cron = entry.get("cron")
    if not isinstance(cron, str) or not cron.strip():
        raise ConfigError(f"{where} cron must be a 5-field crontab line such as '0 6 * * *'")
    try:
        trigger = CrontabTrigger(cron.strip(), zone, second=test_seconds or "0")
    except ValueError as exc:
        raise ConfigError(f"{where} cron: {exc}") from None

    sends = action in SENDING_ACTIONS
    grace_raw = entry.get("misfire_grace")
    if grace_raw is None:
        grace = DEFAULT_SEND_GRACE if sends else None
        if sends and "misfire_grace" in entry:
            raise ConfigError(
                f"{where} misfire_grace cannot be empty for a {action} job: "
                "a digest hours late is worse than none"
            )
    else:
        grace = _duration(grace_raw, f"{where} misfire_grace")

    retries = entry.get("retries", DEFAULT_RETRIES)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        raise ConfigError(f"{where} retries must be a whole number from 0 to 10, not {retries!r}")
    retry_delay = DEFAULT_RETRY_DELAY
    if "retry_delay" in entry:
        retry_delay = _duration(entry["retry_delay"], f"{where} retry_delay")

    approval = entry.get("approval")
    if approval is not None and action != "send":
        raise ConfigError(
            f"{where} approval applies to send jobs only (a run job drafts as it sends)"
        )
    if approval is not None and approval not in APPROVAL_POLICIES:
        raise ConfigError(
            f"{where} approval {approval!r} must be auto (send the draft as is) "
            "or approved (send only an approved edition)"
        )
    return CronJob(
        name=name,
        cron=cron.strip(),
        action=action,
        trigger=trigger,
        misfire_grace=grace,
        retries=retries,
        retry_delay=retry_delay,
        approval=approval or "auto",
    )


# -- --next -------------------------------------------------------------------------


def upcoming(schedule: Schedule, count: int, now: datetime) -> dict[str, list[datetime]]:
    """The next `count` fire times of every job, from `now`."""
    result: dict[str, list[datetime]] = {}
    for job in schedule.jobs:
        times: list[datetime] = []
        current = job.trigger.next_fire_time(now)
        while current is not None and len(times) < count:
            times.append(current)
            current = job.trigger.fire_time_after(current)
        result[job.name] = times
    return result


def describe_upcoming(schedule: Schedule, count: int, now: datetime) -> list[str]:
    """`digest schedule --next N`: each job, then its fire times in the zone and in UTC."""
    lines = [f"{schedule.path}: times in {schedule.time_zone} = UTC"]
    times = upcoming(schedule, count, now)
    for job in schedule.jobs:
        extra = f", approval {job.approval}" if job.action == "send" else ""
        grace = "no grace limit"
        if job.misfire_grace is not None:
            grace = f"grace {_span(job.misfire_grace)}"
        lines.append(f"{job.name}: {job.action} at '{job.cron}' ({grace}{extra})")
        for t in times[job.name]:
            local = t.astimezone(schedule.zone)
            lines.append(
                f"  {local:%a %Y-%m-%d %H:%M} {local:%Z} ({local:%z})"
                f"  =  {t.astimezone(UTC):%a %Y-%m-%d %H:%M} UTC"
            )
    return lines


def _span(delta: timedelta | None) -> str:
    if delta is None:
        return "none"
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")


# -- telling the operators --------------------------------------------------------------


def mail_operators(settings: Settings, subject: str, body: str) -> bool:
    """Mail the operators in digest.toml through the configured backend; never raises.

    The mail goes where every other mail goes (an .eml in the outbox, SMTP or
    SendGrid), so a held or failed send reaches a person before readers notice.
    """
    operators = settings.sender.operators
    if not operators:
        log.warning(
            "no [sender] operators in %s, so this was not mailed: %s", settings.path, subject
        )
        return False
    try:
        send_now(settings, notice_for(settings, subject, body), operators)
    except Exception as exc:  # an alert that cannot go out must not stop the scheduler
        log.error("could not mail the operators (%s): %s", subject, exc)
        return False
    log.info("mailed the operators (%s): %s", ", ".join(operators), subject)
    return True


# -- running a fire time -----------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one fire time of one job."""

    job: str
    fire_time: datetime
    state: str  # ok | failed | held | skipped | stopped | taken (someone else's)
    detail: str = ""


Clock = Callable[[], datetime]
Alert = Callable[[str, str], object]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Runner:
    """Fires jobs for one active scheduler: records, catch-up rules, retries, alerts.

    `clock` is injectable so tests can say "it is 14:00 after a night of downtime"
    without waiting for it; `halt` is set when the scheduler stops or loses its lease,
    and a running send finishes its batch and returns.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        schedule: Schedule,
        *,
        holder: str,
        halt: threading.Event | None = None,
        clock: Clock = _utc_now,
        alert: Alert | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.schedule = schedule
        self.holder = holder
        self.halt = halt or threading.Event()
        self.clock = clock
        self.alert: Alert = alert or (lambda s, b: mail_operators(settings, s, b))

    def fire_due(self, job: CronJob) -> Outcome | None:
        """What APScheduler calls at each fire time: run the fire time that is due now."""
        try:
            fire_time = job.trigger.previous_fire_time(self.clock())
            return None if fire_time is None else self.fire(job, fire_time)
        except Exception as exc:  # the store is away, say: log it, and the scheduler goes on
            log.error("%s: could not run: %s: %s", job.name, type(exc).__name__, exc)
            return None

    def fire(self, job: CronJob, fire_time: datetime, *, reason: str = "") -> Outcome:
        """Run `job` for `fire_time` unless it ran already; apply grace, retries, alerts."""
        now = self.clock()
        label = f"{job.name} ({self.when(fire_time)})"
        late = now - fire_time
        if job.misfire_grace is not None and late > job.misfire_grace:
            return self._too_late(job, fire_time, label, late)
        if not self.store.claim_job_run(job.name, fire_time, self.holder, max_starts=MAX_STARTS):
            row = self.store.job_run(job.name, fire_time)
            who = f"{row.state} (by {row.holder})" if row is not None else "taken"
            log.info("%s: already %s; not run again", label, who)
            return Outcome(job.name, fire_time, "taken", who)
        log.info("%s: %s started%s", label, job.action, f" ({reason})" if reason else "")
        started = time.monotonic()
        outcome = self._run_with_retries(job, fire_time, label)
        seconds = time.monotonic() - started
        upcoming_at = job.trigger.next_fire_time(self.clock())
        following = f"; next run {self.when(upcoming_at)}" if upcoming_at else ""
        level = logging.INFO if outcome.state in ("ok", "stopped") else logging.ERROR
        log.log(
            level, "%s: %s in %.1fs: %s%s", label, outcome.state, seconds, outcome.detail, following
        )
        return outcome

    def _too_late(self, job: CronJob, fire_time: datetime, label: str, late: timedelta) -> Outcome:
        state = "held" if job.sends else "skipped"
        detail = f"{_span(late)} late, more than its misfire grace of {_span(job.misfire_grace)}"
        if not self.store.claim_job_run(
            job.name, fire_time, self.holder, state=state, detail=detail, max_starts=MAX_STARTS
        ):
            return Outcome(job.name, fire_time, "taken", "recorded already")
        if job.sends:
            # A digest at 3 pm is worse than none: keep it back and tell a person.
            log.error("%s: held, not sent: %s", label, detail)
            self._alert(job, fire_time, "held", detail)
        else:
            log.warning("%s: skipped: %s", label, detail)
        return Outcome(job.name, fire_time, state, detail)

    def _run_with_retries(self, job: CronJob, fire_time: datetime, label: str) -> Outcome:
        attempts = job.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                state, detail = self._perform(job, fire_time)
            except Exception as exc:  # one failing job must never stop the scheduler
                # Our errors are written for operators; anything else is a bug, so say what.
                error = str(exc) if isinstance(exc, DigestError) else f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    log.warning(
                        "%s: attempt %d of %d failed: %s; retrying in %s",
                        label,
                        attempt,
                        attempts,
                        error,
                        _span(job.retry_delay),
                    )
                    if self.halt.wait(job.retry_delay.total_seconds()):
                        return self._finish(
                            job, fire_time, "stopped", f"stopped before retry: {error}"
                        )
                    continue
                detail = f"failed after {attempts} attempt{'s' if attempts > 1 else ''}: {error}"
                return self._finish(job, fire_time, "failed", detail)
            return self._finish(job, fire_time, state, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(self, job: CronJob, fire_time: datetime, state: str, detail: str) -> Outcome:
        if not self.store.finish_job_run(job.name, fire_time, self.holder, state, detail):
            log.warning("%s: another scheduler has taken this run over", job.name)
        if state in ("failed", "held"):
            self._alert(job, fire_time, state, detail)
        if state == "stopped" and job.sends:
            log.warning(
                "%s: stopped part-way; the next active scheduler resumes it within its grace, "
                "or finish it by hand: %s",
                job.name,
                self._command(job, fire_time),
            )
        return Outcome(job.name, fire_time, state, detail)

    def _perform(self, job: CronJob, fire_time: datetime) -> tuple[str, str]:
        """Do the job once through digest.jobs. Returns (state, detail); raises on failure."""
        day = fire_time.astimezone(self.settings.newsroom.zone).date()
        if job.action == "collect":
            result = jobs.collect(self.settings, self.store)
            summary = (
                f"{result.new} new, {result.updated} updated stories, "
                f"{result.pageview_rows} page-view rows"
            )
            if result.failed_sources:
                raise InputError(
                    f"{len(result.failed_sources)} source(s) could not be read "
                    f"({', '.join(result.failed_sources[:3])}); {summary}"
                )
            return "ok", summary
        if job.action == "draft":
            edition = jobs.draft(self.settings, self.store, day)
            return "ok", f"edition {edition.name} drafted: {edition.subject}"
        if job.action == "preview":
            return "ok", self._preview(fire_time)
        if job.action == "run":
            summary = jobs.run(self.settings, self.store, day, stop=self.halt)
            return self._sent(summary.send)
        name = day.isoformat()
        if job.approval == "approved":
            edition = jobs.load_edition(self.store, name)
            if edition.status not in ("approved", "sending", "sent"):
                return "held", (
                    f"edition {name} is {edition.status!r}, not approved; "
                    "approve it, then send it by hand"
                )
        # As `digest run` does: the newsroom's subscribers.csv is the list it keeps, so
        # bring it in before the send snapshots its recipients (never resubscribes).
        jobs.sync_subscribers(self.settings, self.store)
        return self._sent(jobs.send(self.settings, self.store, name, resume=True, stop=self.halt))

    def _preview(self, fire_time: datetime) -> str:
        """Draft the next edition to go out and mail the editors a [TEST] copy of it."""
        day = jobs.upcoming(self.settings, fire_time)
        name = day.isoformat()
        if self.store.get_send(name) is not None:
            return f"edition {name} is being sent or was sent already; no preview mailed"
        edition = jobs.draft(self.settings, self.store, day)
        editors = self.settings.sender.editors
        jobs.send_test(self.settings, self.store, name, editors)
        return f"preview of edition {name} ({edition.status}) mailed to {len(editors)} editor(s)"

    def _sent(self, result: SendReport) -> tuple[str, str]:
        summary = (
            f"edition {result.edition}: {result.sent:,} of {result.recipients:,} recipients sent "
            f"({result.sent_now:,} now) via {result.backend}"
        )
        if result.state == "done":
            return "ok", summary
        if self.halt.is_set() and result.state == "paused":
            return "stopped", f"{summary}; stopped after the batch in flight"
        raise SendError(f"{summary}; send is {result.state}: {result.note or 'not finished'}")

    def catch_up(self) -> list[Outcome]:
        """After downtime or a takeover: each job's latest missed fire time, once, in order.

        Missed is counted from the job's newest recorded run, so a job that has never
        run here (a first start, a new job) has missed nothing. A missed collect or
        draft runs once however many fire times passed; a missed send or run goes
        through `fire`, which holds it if it is past its grace. A latest run that was
        stopped or interrupted part-way is resumed the same way; the send ledger
        makes that safe (sent batches are skipped, in-doubt ones left to a person).
        """
        try:
            return self._catch_up()
        except Exception as exc:  # as in fire_due: logged, and the schedule goes on
            log.error("catch-up failed: %s: %s", type(exc).__name__, exc)
            return []

    def _catch_up(self) -> list[Outcome]:
        now = self.clock()
        interrupted = self.store.interrupt_job_runs(self.holder)
        for row in interrupted:
            log.warning(
                "%s (%s): scheduler %s stopped while it ran; marked interrupted",
                row.job,
                self.when(row.fire_time),
                row.holder,
            )
        due: list[tuple[datetime, int, CronJob, str]] = []
        for order, job in enumerate(self.schedule.jobs):
            latest = job.trigger.previous_fire_time(now)
            last = self.store.last_job_run(job.name)
            if latest is None or last is None:
                continue
            if last.fire_time < latest:
                missed = len(job.trigger.fire_times(last.fire_time, latest))
                reason = (
                    f"catch-up: missed {missed} fire time{'s' if missed > 1 else ''} "
                    f"since {self.when(last.fire_time)}; running once, for the latest"
                )
                due.append((latest, order, job, reason))
            elif last.fire_time == latest and last.state in ("stopped", "interrupted"):
                due.append((latest, order, job, f"resuming the run left {last.state}"))
        resumed = {(job.name, fire_time) for fire_time, _, job, _ in due}
        for row in interrupted:
            known = self.schedule.find(row.job)
            if known and known.sends and (row.job, row.fire_time) not in resumed:
                self._alert(
                    known,
                    row.fire_time,
                    "interrupted",
                    f"scheduler {row.holder} stopped while this ran; a later fire time "
                    "has replaced it, so it is not resumed automatically",
                )
        if not due:
            log.info("catch-up: nothing missed")
        outcomes = []
        for fire_time, _order, job, reason in sorted(due, key=lambda d: (d[0], d[1])):
            if self.halt.is_set():
                break
            outcomes.append(self.fire(job, fire_time, reason=reason))
        return outcomes

    def on_max_instances(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a fire time because the job's previous run is still going."""
        job = self.schedule.find(event.job_id)
        if job is None or not event.scheduled_run_times:
            return
        fire_time = event.scheduled_run_times[-1]
        detail = "the previous run was still going"
        if self.store.claim_job_run(
            job.name, fire_time, self.holder, state="skipped", detail=detail
        ):
            log.warning("%s (%s): skipped: %s", job.name, self.when(fire_time), detail)
            if job.sends:
                self._alert(job, fire_time, "skipped", detail)

    def when(self, moment: datetime) -> str:
        """A fire time as the newsroom reads it (with seconds only under the test hook)."""
        local = moment.astimezone(self.schedule.zone)
        if self.schedule.test_seconds:
            return f"{local:%Y-%m-%d %H:%M:%S %Z}"
        return f"{local:%Y-%m-%d %H:%M %Z}"

    def _command(self, job: CronJob, fire_time: datetime) -> str:
        day = fire_time.astimezone(self.settings.newsroom.zone).date().isoformat()
        config = f"--config {self.settings.path}"
        if job.action == "run":
            return f"digest run --date {day} {config}"
        if job.action == "send":
            return f"digest send {day} --resume {config}"
        if job.action == "preview":
            coming = jobs.upcoming(self.settings, fire_time).isoformat()
            editors = " ".join(f"--test {e}" for e in self.settings.sender.editors)
            return f"digest send {coming} {editors} {config}"
        return f"digest {job.action} {config}"

    def _alert(self, job: CronJob, fire_time: datetime, state: str, detail: str) -> None:
        when = self.when(fire_time)
        subject = f"{job.name} {state}: {job.action} due {when}"
        lines = [
            f"The {job.action} job {job.name!r}, due {when} "
            f"({fire_time.astimezone(UTC):%Y-%m-%d %H:%M} UTC), is {state}.",
            "",
            detail,
            "",
        ]
        if job.sends:
            day = fire_time.astimezone(self.settings.newsroom.zone).date().isoformat()
            lines += [
                f"What went out so far: digest sends {day} --config {self.settings.path}",
                f"To send it now, by hand:  {self._command(job, fire_time)}",
            ]
        else:
            lines.append(f"To run it by hand:  {self._command(job, fire_time)}")
        lines += ["", f"Scheduler: {self.holder}; schedule: {self.schedule.path}"]
        self.alert(subject, "\n".join(lines) + "\n")


# -- one active scheduler ------------------------------------------------------------------


class Lease(Protocol):
    """The right to be the one active scheduler for a database."""

    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str: ...


def _lease_holder(store: Store) -> str:
    row = store.lease(LEASE_NAME)
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
            return self.store.take_lease(LEASE_NAME, self.me, self.ttl)
        except Exception as exc:  # locked or unreadable: stay standby and try again
            log.warning("could not check the scheduler lease: %s", exc)
            return False

    def renew(self) -> bool:
        try:
            return self.store.renew_lease(LEASE_NAME, self.me, self.ttl)
        except Exception as exc:
            # Not renewed in time, the lease may lapse and a standby take over: stop
            # scheduling rather than risk two active schedulers.
            log.error("could not renew the scheduler lease: %s", exc)
            return False

    def release(self) -> None:
        with suppress(Exception):  # it lapses by itself anyway
            self.store.release_lease(LEASE_NAME, self.me)

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
                self._conn = self.store.lock_connection()
            self._held = self.store.try_advisory_lock(self._conn, LEASE_NAME)
            if self._held:
                self.store.take_lease(LEASE_NAME, self.me, self.ttl, force=True)
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
            self.store.take_lease(LEASE_NAME, self.me, self.ttl, force=True)
            return True
        except Exception as exc:
            log.error("lost the connection that holds the scheduler lock: %s", exc)
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None and self._held:
            try:
                self.store.advisory_unlock(self._conn, LEASE_NAME)
                self.store.release_lease(LEASE_NAME, self.me)
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
