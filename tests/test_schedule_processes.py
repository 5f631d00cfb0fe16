"""`digest schedule` as an operator runs it: real processes, a real SQLite file or PostgreSQL.

Two schedulers on one database: one is active, the other waits; killing the
active one (SIGKILL, no goodbye) hands over within the standby interval and every
fire time still runs exactly once. Jobs here fire every 2 seconds through the
test-only DIGEST_SCHEDULE_TEST_SECONDS hook, so the whole story takes ~15 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from digest.schedule import TEST_SECONDS_ENV
from digest.store import Store

DIGEST = str(Path(sys.executable).parent / "digest")
STANDBY_INTERVAL = 3.0  # seconds; the handover must happen within it
TICK = timedelta(seconds=2)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update({"DIGEST_SECRET_KEY": "test-secret", **extra})
    return env


def digest(
    newsroom: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, *args, "--config", str(newsroom / "digest.toml")],
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- invalid cron.yaml: one clear line, exit status 2 ------------------------------------------

INVALID = [
    ('jobs:\n  send:\n    cron: "0 6 * * 8"\n    action: send\n', "job 'send': cron: day of week"),
    (
        'jobs:\n  send:\n    cron: "0 6 * *"\n    action: send\n',
        "job 'send': cron: '0 6 * *' has 4",
    ),
    ('jobs:\n  mail:\n    cron: "0 6 * * *"\n    action: mail\n', "job 'mail': action is 'mail'"),
    ('time_zone: Mars/Olympus\njobs: {s: {cron: "0 6 * * *", action: send}}\n', "time_zone"),
    ("jobs:\n  send:\n    cron: */5 * * * *\n    action: send\n", "line 3: not valid YAML"),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    approval: maybe\n',
        "job 'send': approval 'maybe'",
    ),
    (
        'jobs:\n  send:\n    cron: "0 6 * * *"\n    action: send\n    misfire_grace: soon\n',
        "job 'send': misfire_grace 'soon' is not a duration",
    ),
]


@pytest.mark.parametrize(("body", "expected"), INVALID, ids=[e for _b, e in INVALID])
def test_an_invalid_cron_yaml_is_one_line_and_exit_2(
    newsroom: Path, body: str, expected: str
) -> None:
    cron = newsroom / "cron.yaml"
    cron.write_text(body)
    result = digest(newsroom, "schedule", "--next", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {cron}: ") and expected in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_missing_cron_yaml_is_one_line_and_exit_2(newsroom: Path) -> None:
    (newsroom / "cron.yaml").unlink()
    result = digest(newsroom, "schedule")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cron.yaml: no such file" in result.stderr


def test_next_prints_every_job_in_the_zone_and_utc(newsroom: Path) -> None:
    result = digest(newsroom, "schedule", "--next", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{newsroom / 'cron.yaml'}: times in America/Juneau = UTC"
    assert "send: send at '0 6 * * *' (grace 30m, approval auto)" in lines
    times = [line for line in lines if line.startswith("  ")]
    assert len(times) == 2 * 4  # two for each of the sample's four jobs
    pattern = re.compile(
        r"^  \w{3} (\S+ \d\d:\d\d) (AKST|AKDT) \(([-+]\d{4})\)  =  \w{3} (\S+ \d\d:\d\d) UTC$"
    )
    for line in times:
        match = pattern.match(line)
        assert match, line
        local, _abbreviation, offset, in_utc = match.groups()
        shown = datetime.strptime(f"{local} {offset}", "%Y-%m-%d %H:%M %z")
        assert shown.astimezone(UTC) == datetime.strptime(in_utc, "%Y-%m-%d %H:%M").replace(
            tzinfo=UTC
        )


# -- two schedulers, one database ----------------------------------------------------------------

FAST_CRON = """
time_zone: America/Juneau
jobs:
  tick:
    cron: "* * * * *"   # with DIGEST_SCHEDULE_TEST_SECONDS=*/2: every 2 seconds
    action: collect
    retries: 0
"""


class Scheduler:
    """One `digest schedule` process, its log in a file we can read while it runs."""

    def __init__(self, newsroom: Path, name: str, env: dict[str, str]) -> None:
        self.log = newsroom / f"{name}.log"
        self.handle = self.log.open("w")
        self.process = subprocess.Popen(
            [
                DIGEST,
                "schedule",
                "--config",
                str(newsroom / "digest.toml"),
                "--standby-interval",
                str(STANDBY_INTERVAL),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.handle,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> float:
        """Wait until `pattern` has been logged `count` times; return when it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.text())) >= count:
                return time.monotonic()
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{self.log.name}: no {count} x {pattern!r} in:\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.handle.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, newsroom: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{newsroom / 'var' / 'digest.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.slow
def test_two_schedulers_fire_once_and_the_standby_takes_over(newsroom: Path, database: str) -> None:
    (newsroom / "cron.yaml").write_text(FAST_CRON)
    env = environment(**{TEST_SECONDS_ENV: "*/2", "DIGEST_DATABASE_URL": database})
    first = Scheduler(newsroom, "first", env)
    second: Scheduler | None = None
    try:
        first.wait_for(r"active \(")
        second = Scheduler(newsroom, "second", env)
        second.wait_for(r"standby \(")
        first.wait_for(r": ok in ", count=2)
        killed_at = datetime.now(UTC)
        first.process.send_signal(signal.SIGKILL)  # no clean-up, no goodbye
        killed = time.monotonic()
        took_over = second.wait_for(r"active \(")
        handover = took_over - killed
        second.wait_for(r": ok in ", count=2)
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(15) == 0
        second.wait_for(r"scheduler \S+ stopped")
    finally:
        first.stop()
        if second is not None:
            second.stop()

    print(f"handover took {handover:.2f}s (standby interval {STANDBY_INTERVAL:g}s)")
    assert handover <= STANDBY_INTERVAL
    logs = first.text() + second.text()
    # Neither ever found a fire time the other had taken: the standby fired nothing
    # while the first was active. (Within one process, the catch-up at activation and
    # APScheduler may both reach for the fire time that is due right then; the
    # record settles it and says so, naming the process itself.)
    for scheduler in (first, second):
        me = re.findall(r"active \((\S+)\)", scheduler.text())
        taken_by = re.findall(r"already \w+ \(by (\S+)\)", scheduler.text())
        assert set(taken_by) <= set(me), scheduler.text()
    assert "no longer the active scheduler" not in logs
    done = Counter(re.findall(r"tick \((\S+ \S+) AK[SD]T\): ok in ", logs))
    assert done and set(done.values()) == {1}

    store = Store.open(database)
    try:
        runs = store.runs.list_job_runs("tick")
    finally:
        store.close()
    first_runs = [r for r in runs if r.started_at < killed_at]
    second_runs = [r for r in runs if r.started_at >= killed_at]
    assert first_runs and second_runs
    assert {r.holder for r in first_runs}.isdisjoint({r.holder for r in second_runs})
    assert len(done) == sum(r.state == "ok" for r in runs)
    # Every 2 seconds, in order; one gap at most, where the handover coalesced what it missed.
    fire_times = [r.fire_time for r in runs]
    gaps = [b - a for a, b in pairwise(fire_times)]
    assert all(gap >= TICK for gap in gaps)
    assert sum(gap > TICK for gap in gaps) <= 1
    assert max(gaps) <= TICK + timedelta(seconds=STANDBY_INTERVAL)
    # The first was killed mid-collect at most once; that run is marked, not lost in silence.
    assert {r.state for r in first_runs} <= {"ok", "interrupted"}
    assert {r.state for r in second_runs} <= {"ok", "stopped"}
