"""cron.yaml and fire times: crontab's weekdays, daylight saving, validation, --next.

The daylight-saving behaviour asserted here (see CrontabTrigger):
- a fixed-time job whose local time is skipped when clocks spring forward runs once,
  at the moment the clocks jump: 02:30 in America/Juneau on 2026-03-08 runs at
  03:00 AKDT; 01:30 in Europe/London on 2026-03-29 runs at 02:00 BST;
- a fixed-time job in the hour repeated when clocks fall back runs once, at the
  first (daylight-time) occurrence;
- jobs with "*" in the minute or hour run by elapsed time, through both changes;
- every other job keeps its local time, so its UTC time moves by an hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from digest import config
from digest.errors import ConfigError
from digest.schedule import CrontabTrigger, describe_upcoming, load, upcoming
from digest.store import Store

JUNEAU = ZoneInfo("America/Juneau")
LONDON = ZoneInfo("Europe/London")


def fires(expression: str, zone: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    """The first `count` fire times at or after `start`, each as a local time in `zone`."""
    trigger = CrontabTrigger(expression, zone)
    found: list[datetime] = []
    previous = None
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, previous or start)
        assert previous is not None and previous.tzinfo is UTC
        found.append(previous.astimezone(zone))
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(fire: datetime) -> str:
    return f"{fire:%Y-%m-%d %H:%M %Z}"


# -- weekdays: crontab(5), not APScheduler ----------------------------------------------


def test_1_to_5_is_monday_to_friday() -> None:
    start = datetime(2026, 3, 1, tzinfo=JUNEAU)  # a Sunday
    days = [f.date() for f in fires("0 6 * * 1-5", JUNEAU, start, 10)]
    assert [d.strftime("%a") for d in days] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2
    assert days[0] == date(2026, 3, 2)
    # The trap this avoids: APScheduler 3's from_crontab counts from Monday = 0.
    naive = CronTrigger.from_crontab("0 6 * * 1-5", timezone=JUNEAU)
    first = naive.get_next_fire_time(None, start)
    assert first is not None and first.strftime("%a") == "Tue"


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN", "7-7"])
def test_0_and_7_are_sunday(dow: str) -> None:
    start = datetime(2026, 3, 2, tzinfo=JUNEAU)  # a Monday
    found = fires(f"0 6 * * {dow}", JUNEAU, start, 3)
    assert [f.date() for f in found] == [date(2026, 3, 8), date(2026, 3, 15), date(2026, 3, 22)]


@pytest.mark.parametrize(
    ("dow", "expected"),
    [
        ("fri-sun", ["Fri", "Sat", "Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
        ("mon,wed,6", ["Mon", "Wed", "Sat"]),
        ("1-5/2", ["Mon", "Wed", "Fri"]),
    ],
)
def test_weekday_names_ranges_and_steps(dow: str, expected: list[str]) -> None:
    start = datetime(2026, 3, 1, tzinfo=JUNEAU)  # a Sunday
    found = {f.strftime("%a") for f in fires(f"0 6 * * {dow}", JUNEAU, start, 14)}
    assert found == set(expected)


def test_day_of_month_and_weekday_together_mean_either() -> None:
    # crontab(5): "0 6 1 * 1" runs on the 1st AND on every Monday.
    start = datetime(2026, 5, 30, tzinfo=JUNEAU)
    found = [f.date() for f in fires("0 6 1 * 1", JUNEAU, start, 4)]
    assert found == [date(2026, 6, 1), date(2026, 6, 8), date(2026, 6, 15), date(2026, 6, 22)]
    assert [
        f.date() for f in fires("0 6 1 * 1", JUNEAU, datetime(2026, 6, 23, tzinfo=JUNEAU), 2)
    ] == [
        date(2026, 6, 29),
        date(2026, 7, 1),
    ]
    # With "*" in either field, the other alone decides.
    assert {f.day for f in fires("0 6 1 * *", JUNEAU, start, 3)} == {1}


# -- daylight saving: 2026 and 2027, America/Juneau and Europe/London ----------------------

# (zone, crontab, first day, local times on it and the two days after, the same in UTC)
DAILY_ACROSS_CHANGES = [
    # 06:00 every day keeps its local time; its UTC time moves by the hour.
    (
        JUNEAU,
        "0 6 * * *",
        "2026-03-07",
        "06:00 AKST, 06:00 AKDT, 06:00 AKDT",
        "15:00, 14:00, 14:00",
    ),
    (
        JUNEAU,
        "0 6 * * *",
        "2026-10-31",
        "06:00 AKDT, 06:00 AKST, 06:00 AKST",
        "14:00, 15:00, 15:00",
    ),
    (
        JUNEAU,
        "0 6 * * *",
        "2027-03-13",
        "06:00 AKST, 06:00 AKDT, 06:00 AKDT",
        "15:00, 14:00, 14:00",
    ),
    (
        JUNEAU,
        "0 6 * * *",
        "2027-11-06",
        "06:00 AKDT, 06:00 AKST, 06:00 AKST",
        "14:00, 15:00, 15:00",
    ),
    (LONDON, "0 6 * * *", "2026-03-28", "06:00 GMT, 06:00 BST, 06:00 BST", "06:00, 05:00, 05:00"),
    (LONDON, "0 6 * * *", "2026-10-24", "06:00 BST, 06:00 GMT, 06:00 GMT", "05:00, 06:00, 06:00"),
    (LONDON, "0 6 * * *", "2027-03-27", "06:00 GMT, 06:00 BST, 06:00 BST", "06:00, 05:00, 05:00"),
    (LONDON, "0 6 * * *", "2027-10-30", "06:00 BST, 06:00 GMT, 06:00 GMT", "05:00, 06:00, 06:00"),
    # 02:30 does not exist on a US spring-forward day (02:00 -> 03:00): it runs once,
    # when the clocks jump, at 03:00 AKDT; the day after it is 02:30 again.
    (
        JUNEAU,
        "30 2 * * *",
        "2026-03-07",
        "02:30 AKST, 03:00 AKDT, 02:30 AKDT",
        "11:30, 11:00, 10:30",
    ),
    (
        JUNEAU,
        "30 2 * * *",
        "2027-03-13",
        "02:30 AKST, 03:00 AKDT, 02:30 AKDT",
        "11:30, 11:00, 10:30",
    ),
    # In London the clocks jump 01:00 -> 02:00, so 02:30 exists and is kept...
    (LONDON, "30 2 * * *", "2026-03-28", "02:30 GMT, 02:30 BST, 02:30 BST", "02:30, 01:30, 01:30"),
    (LONDON, "30 2 * * *", "2027-03-27", "02:30 GMT, 02:30 BST, 02:30 BST", "02:30, 01:30, 01:30"),
    # ...and 01:30 is the one skipped: it runs at 02:00 BST, when the clocks jump.
    (LONDON, "30 1 * * *", "2026-03-28", "01:30 GMT, 02:00 BST, 01:30 BST", "01:30, 01:00, 00:30"),
    (LONDON, "30 1 * * *", "2027-03-27", "01:30 GMT, 02:00 BST, 01:30 BST", "01:30, 01:00, 00:30"),
    # 01:30 happens twice when clocks fall back: a fixed-time job runs once, the first time.
    (
        JUNEAU,
        "30 1 * * *",
        "2026-10-31",
        "01:30 AKDT, 01:30 AKDT, 01:30 AKST",
        "09:30, 09:30, 10:30",
    ),
    (
        JUNEAU,
        "30 1 * * *",
        "2027-11-06",
        "01:30 AKDT, 01:30 AKDT, 01:30 AKST",
        "09:30, 09:30, 10:30",
    ),
    (LONDON, "30 1 * * *", "2026-10-24", "01:30 BST, 01:30 BST, 01:30 GMT", "00:30, 00:30, 01:30"),
    (LONDON, "30 1 * * *", "2027-10-30", "01:30 BST, 01:30 BST, 01:30 GMT", "00:30, 00:30, 01:30"),
]


@pytest.mark.parametrize(
    ("zone", "expression", "first", "local_times", "utc_times"),
    DAILY_ACROSS_CHANGES,
    ids=[f"{z.key}-{e.replace(' ', '_')}-{d}" for z, e, d, _l, _u in DAILY_ACROSS_CHANGES],
)
def test_daily_jobs_across_dst_changes(
    zone: ZoneInfo, expression: str, first: str, local_times: str, utc_times: str
) -> None:
    day = date.fromisoformat(first)
    found = fires(expression, zone, datetime.combine(day, time(0), tzinfo=zone), 3)
    days = [day + timedelta(days=i) for i in range(3)]
    assert [local(f) for f in found] == [
        f"{d} {t}" for d, t in zip(days, local_times.split(", "), strict=True)
    ]
    assert [f"{f.astimezone(UTC):%Y-%m-%d %H:%M}" for f in found] == [
        f"{d} {t}" for d, t in zip(days, utc_times.split(", "), strict=True)
    ]


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        (JUNEAU, datetime(2026, 3, 8, 0, tzinfo=JUNEAU)),
        (JUNEAU, datetime(2026, 11, 1, 0, tzinfo=JUNEAU)),
        (JUNEAU, datetime(2027, 3, 14, 0, tzinfo=JUNEAU)),
        (JUNEAU, datetime(2027, 11, 7, 0, tzinfo=JUNEAU)),
        (LONDON, datetime(2026, 3, 29, 0, tzinfo=LONDON)),
        (LONDON, datetime(2026, 10, 25, 0, tzinfo=LONDON)),
        (LONDON, datetime(2027, 3, 28, 0, tzinfo=LONDON)),
        (LONDON, datetime(2027, 10, 31, 0, tzinfo=LONDON)),
    ],
)
def test_wildcard_jobs_run_by_elapsed_time_through_changes(zone: ZoneInfo, start: datetime) -> None:
    # "*/30 * * * *": every 30 real minutes, none lost in the skipped hour and none
    # doubled (by real time) in the repeated one.
    found = [f.astimezone(UTC) for f in fires("*/30 * * * *", zone, start, 12)]
    gaps = {b - a for a, b in pairwise(found)}
    assert gaps == {timedelta(minutes=30)}


def test_previous_fire_time_agrees_with_moved_fire_times() -> None:
    trigger = CrontabTrigger("30 2 * * *", JUNEAU)
    moved = datetime(2026, 3, 8, 3, 0, tzinfo=JUNEAU)  # the 02:30 run on the spring-forward day
    assert trigger.previous_fire_time(moved) == moved
    just_before = moved.astimezone(UTC) - timedelta(
        seconds=1
    )  # UTC: local arithmetic is wall-clock
    assert trigger.previous_fire_time(just_before) == datetime(2026, 3, 7, 2, 30, tzinfo=JUNEAU)
    repeated = CrontabTrigger("30 1 * * *", JUNEAU)
    second_pass = utc(2026, 11, 1, 10, 45)  # 01:45 AKST, after the repeated 01:30
    assert repeated.previous_fire_time(second_pass) == utc(2026, 11, 1, 9, 30)
    # Fire times between two moments, for counting what downtime missed.
    daily = CrontabTrigger("0 6 * * *", JUNEAU)
    missed = daily.fire_times(utc(2026, 3, 1), utc(2026, 3, 11))
    assert len(missed) == 10 and missed[0].date() == date(2026, 3, 1)


# -- cron.yaml -------------------------------------------------------------------------------


def write(tmp: Path, body: str) -> Path:
    path = tmp / "cron.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_the_sample_cron_yaml_loads(settings: config.Settings) -> None:
    schedule = load(settings.cron_file, settings)
    assert schedule.time_zone == "America/Juneau" == settings.newsroom.time_zone
    by_name = {j.name: j for j in schedule.jobs}
    assert {j.action for j in schedule.jobs} == {"collect", "draft", "send"}
    send = by_name["send"]
    assert send.approval == "auto" and send.misfire_grace == timedelta(minutes=30)
    assert by_name["draft"].misfire_grace is None  # a missed draft always runs once
    first = send.trigger.next_fire_time(datetime(2026, 3, 7, 12, tzinfo=JUNEAU))
    assert first == datetime(2026, 3, 8, 6, tzinfo=JUNEAU)


def test_defaults_and_durations(settings: config.Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
jobs:
  morning:
    cron: "0 6 * * 1-5"
    action: run
  nightly:
    cron: "15 23 * * *"
    action: collect
    misfire_grace: 1h30m
    retries: 0
    retry_delay: 90
""",
    )
    schedule = load(path, settings)
    assert schedule.time_zone == settings.newsroom.time_zone  # from digest.toml
    assert schedule.standby_interval == 30
    morning, nightly = schedule.jobs
    assert morning.misfire_grace == timedelta(minutes=30) and morning.retries == 2
    assert nightly.misfire_grace == timedelta(hours=1, minutes=30)
    assert nightly.retries == 0 and nightly.retry_delay == timedelta(seconds=90)


INVALID = [
    # (cron.yaml, words the one-line error must contain)
    (
        'time_zone: America/Junaeu\njobs: {a: {cron: "0 6 * * *", action: send}}',
        ["time_zone", "'America/Junaeu'", "IANA"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * 8"\n    action: send',
        ["job 'send'", "cron", "day of week", "8 is out of range 0-7"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 0 6 * * *"\n    action: send',
        ["job 'send'", "6 fields", "5"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 25 * * *"\n    action: send',
        ["job 'send'", "hour", "25 is out of range 0-23"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 31 2 *"\n    action: send',
        ["job 'send'", "never fires"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * mon-fry"\n    action: send',
        ["job 'send'", "day of week", "'fry'"],
    ),
    (
        'jobs:\n  send:\n    cron: "5/10 6 * * *"\n    action: send',
        ["job 'send'", "minute", "a step needs a range"],
    ),
    (
        'jobs:\n  mail:\n    cron: "0 6 * * *"\n    action: mail',
        ["job 'mail'", "action", "collect, draft, preview, send, run"],
    ),
    (
        'jobs:\n  mail:\n    cron: "0 6 * * *"',
        ["job 'mail'", "action is missing"],
    ),
    (
        "jobs:\n  send:\n    action: send",
        ["job 'send'", "cron must be"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    approval: sometimes',
        ["job 'send'", "approval 'sometimes'"],
    ),
    (
        'jobs:\n  get:\n    cron: "0 6 * * *"\n    action: collect\n    approval: auto',
        ["job 'get'", "approval applies to send jobs only"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    misfire_grace: half an hour',
        ["job 'send'", "misfire_grace", "not a duration"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    misfire_grace:',
        ["job 'send'", "misfire_grace cannot be empty"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    retries: many',
        ["job 'send'", "retries"],
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    grace: 30m',
        ["job 'send'", "unknown field 'grace'"],
    ),
    (
        'jobs:\n  a: {cron: "0 6 * * *", action: send}\n  a: {cron: "0 7 * * *", action: send}',
        ["line 3", "'a' appears twice"],
    ),
    (
        "jobs:\n  send:\n    cron: */5 * * * *\n    action: send",
        ["line 3", "not valid YAML", "quote"],
    ),
    (
        "jobs: []",
        ["jobs must map job names"],
    ),
    (
        'timezone: UTC\njobs: {a: {cron: "0 6 * * *", action: send}}',
        ["unknown key 'timezone'"],
    ),
    (
        'standby_interval: 0s\njobs: {a: {cron: "0 6 * * *", action: send}}',
        ["standby_interval"],
    ),
]


@pytest.mark.parametrize(("body", "words"), INVALID, ids=[w[-1] for _b, w in INVALID])
def test_invalid_cron_yaml_names_file_job_and_field(
    settings: config.Settings, tmp_path: Path, body: str, words: list[str]
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load(path, settings)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "\n" not in message
    for word in words:
        assert word in message


def test_missing_cron_yaml(settings: config.Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nowhere.yaml", settings)


def test_next_lists_each_job_in_the_zone_and_utc(settings: config.Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'time_zone: America/Juneau\njobs:\n  send: {cron: "0 6 * * 1-5", action: send}\n',
    )
    schedule = load(path, settings)
    now = datetime(2026, 3, 6, 12, tzinfo=JUNEAU)  # Friday noon, before the spring change
    times = upcoming(schedule, 3, now)["send"]
    assert [local(t.astimezone(JUNEAU)) for t in times] == [
        "2026-03-09 06:00 AKDT",
        "2026-03-10 06:00 AKDT",
        "2026-03-11 06:00 AKDT",
    ]
    lines = describe_upcoming(schedule, 2, now)
    assert lines[1] == "send: send at '0 6 * * 1-5' (grace 30m, approval auto)"
    assert lines[2] == "  Mon 2026-03-09 06:00 AKDT (-0800)  =  Mon 2026-03-09 14:00 UTC"


# -- the store's scheduling queries, on SQLite and PostgreSQL ---------------------------------


def test_a_fire_time_is_claimed_once(store: Store) -> None:
    fire = utc(2026, 3, 9, 14)
    assert store.runs.claim_job_run("send", fire, "a")
    assert not store.runs.claim_job_run("send", fire, "b")  # running: nobody else
    assert store.runs.claim_job_run("send", fire + timedelta(days=1), "b")  # another fire time
    assert store.runs.finish_job_run("send", fire, "a", "ok", "done")
    assert not store.runs.claim_job_run("send", fire, "b")  # finished: never again
    assert store.runs.job_run("send", fire).state == "ok"
    assert store.runs.last_job_run("send").fire_time == fire + timedelta(days=1)


def test_a_stopped_or_interrupted_run_is_resumed_once(store: Store) -> None:
    fire = utc(2026, 3, 9, 14)
    store.runs.claim_job_run("send", fire, "a")
    store.runs.finish_job_run("send", fire, "a", "stopped", "SIGTERM")
    assert store.runs.claim_job_run("send", fire, "b")
    assert not store.runs.claim_job_run("send", fire, "c")  # b is running it
    assert [tuple(r) for r in store.runs.interrupt_job_runs("c")] == [("send", fire, "b")]
    assert not store.runs.claim_job_run("send", fire, "c")  # started twice: left to a person
    row = store.runs.job_run("send", fire)
    assert (row.state, row.holder, row.starts) == ("interrupted", "b", 2)


def test_lease_is_held_by_one_until_it_expires(store: Store) -> None:
    ttl = timedelta(seconds=30)
    assert store.runs.take_lease("scheduler", "a", ttl)
    assert not store.runs.take_lease("scheduler", "b", ttl)
    assert store.runs.renew_lease("scheduler", "a", ttl)
    assert not store.runs.renew_lease("scheduler", "b", ttl)
    store.runs.release_lease("scheduler", "a")
    assert store.runs.take_lease("scheduler", "b", ttl)
    assert not store.runs.renew_lease("scheduler", "a", ttl)  # a has lost it
    assert store.runs.take_lease("scheduler", "c", timedelta(seconds=-1), force=True)
    assert store.runs.lease("scheduler").holder == "c"
    assert store.runs.take_lease("scheduler", "d", ttl)  # c's lease had already expired


def test_advisory_lock_is_one_per_schema(pg_url: str) -> None:
    first, second = Store.open(pg_url), Store.open(pg_url)
    a, b = first.runs.lock_connection(), second.runs.lock_connection()
    try:
        assert first.runs.try_advisory_lock(a, "scheduler")
        assert not second.runs.try_advisory_lock(b, "scheduler")
        a.invalidate()  # the session ends, as when the process dies: the lock goes with it
        assert second.runs.try_advisory_lock(b, "scheduler")
    finally:
        b.close()
        first.close()
        second.close()
