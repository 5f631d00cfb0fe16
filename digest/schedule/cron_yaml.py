"""cron.yaml, read and checked: the newsroom's time zone and its named jobs.

Each job is a crontab(5) line (`digest.schedule.crontab`) and an action (collect,
draft, preview, send, run) with its grace, retries and, for a send, the approval
policy. `load` turns every problem into one ConfigError naming the file, the job and
the field; `describe_upcoming` is `digest schedule --next`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from digest.config import Settings
from digest.errors import ConfigError
from digest.schedule.crontab import CrontabTrigger

# One logger for the whole scheduler, as before the split: its lines are `digest.schedule`.
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
#: TEST ONLY. A crontab seconds field ("*/2") added to every job, so a test can watch
#: two real `digest schedule` processes fire many times in a few seconds. Crontab has
#: no seconds; never set this in production.
TEST_SECONDS_ENV = "DIGEST_SCHEDULE_TEST_SECONDS"

_TOP_KEYS = ("time_zone", "standby_interval", "jobs")
_JOB_KEYS = ("cron", "action", "misfire_grace", "retries", "retry_delay", "approval")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?$")


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
            grace = f"grace {duration_text(job.misfire_grace)}"
        lines.append(f"{job.name}: {job.action} at '{job.cron}' ({grace}{extra})")
        for t in times[job.name]:
            local = t.astimezone(schedule.zone)
            lines.append(
                f"  {local:%a %Y-%m-%d %H:%M} {local:%Z} ({local:%z})"
                f"  =  {t.astimezone(UTC):%a %Y-%m-%d %H:%M} UTC"
            )
    return lines


def duration_text(delta: timedelta | None) -> str:
    """A duration as cron.yaml writes one (1h30m, 90s), for --next and the runner's log."""
    if delta is None:
        return "none"
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")
