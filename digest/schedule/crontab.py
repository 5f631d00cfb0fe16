"""Crontab(5) lines as APScheduler triggers, with crontab's meaning, not APScheduler's.

`CrontabTrigger` turns a crontab line into fire times in one time zone: weekdays
count from Sunday = 0 (APScheduler 3 counts from Monday), day-of-month and
day-of-week restricted together mean either, and daylight-saving changes follow
cron(8) (see the class). It knows nothing of cron.yaml, the jobs or the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

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
