"""Fault tests: the sending process killed at random points, and an API that fails 20% of the time.

`digest send` runs as its own process, as an operator runs it; our SendGrid
server runs as another (`python -m tests.fakes.sendgrid_server --record FILE`),
so it outlives every kill and its record file is what recipients really got.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, need
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted, write_subscribers
from fakes.sendgrid_server import DEFAULT_KEY, read_record

from digest import config
from digest.store import Store

pytestmark = pytest.mark.slow

RECIPIENTS = 20_000


class Newsroom:
    """A sample newsroom with RECIPIENTS subscribers, its own SQLite ledger and env."""

    def __init__(
        self, folder: Path, database_url: str | None = None, batch_size: int = 1000
    ) -> None:
        self.folder = folder
        self.config = copy_newsroom(folder)
        toml = self.config.read_text()
        self.config.write_text(toml.replace("batch_size = 1000", f"batch_size = {batch_size}"))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))},
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_DATABASE_URL": database_url or f"sqlite:///{folder / 'digest.db'}",
            "DIGEST_RETRY_BASE_DELAY": "0.01",
            "SENDGRID_API_KEY": DEFAULT_KEY,
            # As a newsroom on SendGrid sets it: a resume that finds no send yet (the
            # first run died before its snapshot) starts one on SendGrid too.
            "DIGEST_BACKEND": "sendgrid",
        }
        drafted(config.load(self.config, env=self.env))
        self.emails = write_subscribers(folder / "readers.csv", RECIPIENTS)
        imported = self.digest("subscribers", "import", str(folder / "readers.csv"))
        assert imported.returncode == 0, imported.stderr

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "digest.cli", *args, "--config", str(self.config)]

    def digest(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def report(self) -> dict[str, object]:
        shown = self.digest("sends", EDITION, "--json")
        assert shown.returncode == 0, shown.stderr
        (report,) = json.loads(shown.stdout)
        return report  # type: ignore[no-any-return]

    def batch_members(self) -> dict[int, list[str]]:
        store = Store.open(self.env["DIGEST_DATABASE_URL"], upgrade=False)
        try:
            from sqlalchemy import select

            from digest.store import send_batches

            with store.begin() as conn:
                rows = conn.execute(select(send_batches.c.number, send_batches.c.recipients))
                return {n: [e for e, _name in json.loads(r)] for n, r in rows}
        finally:
            store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """Our SendGrid server as a separate process, recording to a file; (url, record, process)."""
    record = tmp_path / "delivered.tsv"
    process = _start_server(record, "--respond-delay", "0.1")
    yield _url(process), record, process
    process.terminate()
    process.wait(timeout=10)


def _start_server(record: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sendgrid_server", "--port", "0",
         "--record", str(record), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on "), line
    return line.split()[-1]


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _kill_when(process: subprocess.Popen[str], ready: object, timeout: float = 60) -> bool:
    """SIGKILL the process once ready() says so; False if it finished first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if ready() or time.monotonic() > deadline:  # type: ignore[operator]
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    return False


def test_sigkill_at_random_points_then_resume_sends_each_reader_once_except_in_doubt(
    tmp_path: Path, server: tuple[str, Path, subprocess.Popen[str]]
) -> None:
    url, record, _process = server
    batch = 500
    room = Newsroom(tmp_path / "newsroom", batch_size=batch)  # 40 batches: more places to die
    room.env["SENDGRID_API_HOST"] = url
    rng = random.Random(os.environ.get("PYTEST_SEED", time.time_ns()))
    print(f"kill points seeded from {rng.random()}")  # shown when the test fails

    # Kill 1 lands anywhere from start-up (the snapshot included) to a third of the way
    # through, whichever comes first; kills 2 and 3 land right after the server took some
    # batch, while its answer is on the way, which is exactly the moment that leaves a
    # batch in doubt. Each kill leaves at least half of what is left unsent, so a fast
    # machine cannot finish the send before the kills (the kill points are by progress,
    # not by the clock alone).
    kills = 0
    first = room.start("send", EDITION)
    delay = rng.uniform(0.3, 2.5)
    early = rng.randrange(1, RECIPIENTS // batch // 3) * batch
    started = time.monotonic()
    kills += _kill_when(
        first, lambda: time.monotonic() - started > delay or _lines(record) >= early
    )
    for _ in range(2):
        before = _lines(record)
        left = (RECIPIENTS - before) // batch
        target = before + rng.randrange(1, max(2, left // 2)) * batch
        resumed = room.start("send", EDITION, "--resume")
        kills += _kill_when(resumed, lambda target=target: _lines(record) >= target)
    assert kills == 3, "a send finished before its kill point"

    finished = room.digest("send", EDITION, "--resume")
    report = room.report()
    doubt = set(report["in_doubt_batches"])  # type: ignore[arg-type]
    members = room.batch_members()
    in_doubt = {email for n in doubt for email in members[n]}
    got = Counter(d.email for d in read_record(record))
    print(f"{kills} kills; in doubt: batches {sorted(doubt)}; {len(got)} readers got a copy")
    assert report["recipients"] == RECIPIENTS
    assert report["sent"] + report["in_doubt"] == RECIPIENTS  # type: ignore[operator]
    for email in room.emails:
        if email in in_doubt:
            assert got[email] <= 1, email
        else:
            assert got[email] == 1, f"{email} got {got[email]} copies"
    if doubt:
        # Reported, and the operator is told what to do.
        assert finished.returncode == 1
        shown = room.digest("sends", EDITION)
        assert "in doubt" in shown.stdout and "--retry-in-doubt" in shown.stdout
    retried = room.digest("send", EDITION, "--resume", "--retry-in-doubt")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert room.report()["state"] == "done"
    got = Counter(d.email for d in read_record(record))
    assert all(got[email] >= 1 for email in room.emails)
    twice = {email for email, n in got.items() if n > 1}
    assert twice <= in_doubt and max(got.values()) <= 2


def test_20_percent_of_requests_failing_still_sends_each_reader_exactly_once(
    tmp_path: Path,
) -> None:
    record = tmp_path / "delivered.tsv"
    process = _start_server(
        record, "--fail-rate", "0.2", "--fail-kinds", "500,503,429,drop", "--seed", "7"
    )
    try:
        room = Newsroom(tmp_path / "newsroom")
        room.env["SENDGRID_API_HOST"] = _url(process)
        sent = room.digest("send", EDITION)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "trying again" in sent.stderr  # faults happened and were retried
    finally:
        process.terminate()
        _out, stderr = process.communicate(timeout=10)
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails)
    assert set(got.values()) == {1}
    requests, accepted = (int(part.split(": ")[1]) for part in stderr.split(", ")[:2])
    assert requests > accepted == RECIPIENTS // 1000


def test_workers_on_postgresql_share_a_send_without_sending_anyone_twice(
    tmp_path: Path, pg_url: str
) -> None:
    need(bool(pg_url), "PostgreSQL is needed for workers (FOR UPDATE SKIP LOCKED)")
    record = tmp_path / "delivered.tsv"
    process = _start_server(record, "--respond-delay", "0.1")
    try:
        room = Newsroom(tmp_path / "newsroom", database_url=pg_url)
        room.env["SENDGRID_API_HOST"] = _url(process)
        workers = [room.start("worker", "--poll", "0.1") for _ in range(2)]
        sent = room.digest("send", EDITION)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    finally:
        process.terminate()
        process.wait(timeout=10)
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails) and set(got.values()) == {1}
    # The sender alone would have sent them all; the workers took a share.
    assert "20,000 of 20,000 recipients sent" in sent.stdout
    assert f"({RECIPIENTS:,} now)" not in sent.stdout
