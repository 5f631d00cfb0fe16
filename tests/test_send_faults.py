"""Fault tests: the sending process killed at random points, SendGrid's events settling
what the kills left in doubt, and an API that fails 20% of the time.

`digest send` runs as its own process, as an operator runs it; our SendGrid
server runs as another (`python -m tests.fakes.sendgrid_server --record FILE`),
so it outlives every kill and its record file is what recipients really got. With
events on, it posts SendGrid's signed Event Webhook requests to `digest web`, a
process of its own too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import need
from fakes import postgres
from fakes.newsroom import EDITION
from fakes.processes import Newsroom, kill_when, lines, server_url, start_server, wait_until
from fakes.sendgrid_server import read_record
from fakes.sendgrid_webhook import WebhookKey
from sqlalchemy import text

pytestmark = pytest.mark.slow

RECIPIENTS = 20_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """Our SendGrid server as a separate process, recording to a file; (url, record, process)."""
    record = tmp_path / "delivered.tsv"
    process = start_server(record, "--respond-delay", "0.1")
    yield server_url(process), record, process
    process.terminate()
    process.wait(timeout=10)


def test_sigkill_at_random_points_then_resume_sends_each_reader_once_except_in_doubt(
    tmp_path: Path, server: tuple[str, Path, subprocess.Popen[str]]
) -> None:
    url, record, _process = server
    batch = 500
    # 40 batches: more places to die. No Event Webhook here, so no wait for its events.
    room = Newsroom(tmp_path / "newsroom", batch_size=batch, delivery="event_wait_seconds = 0")
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
    kills += kill_when(first, lambda: time.monotonic() - started > delay or lines(record) >= early)
    for _ in range(2):
        before = lines(record)
        left = (RECIPIENTS - before) // batch
        target = before + rng.randrange(1, max(2, left // 2)) * batch
        resumed = room.start("send", EDITION, "--resume")
        kills += kill_when(resumed, lambda target=target: lines(record) >= target)
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
    process = start_server(
        record, "--fail-rate", "0.2", "--fail-kinds", "500,503,429,drop", "--seed", "7"
    )
    try:
        room = Newsroom(tmp_path / "newsroom")
        room.env["SENDGRID_API_HOST"] = server_url(process)
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
    process = start_server(record, "--respond-delay", "0.1")
    try:
        room = Newsroom(tmp_path / "newsroom", database_url=pg_url)
        room.env["SENDGRID_API_HOST"] = server_url(process)
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


def _processed(room: Newsroom) -> int:
    """SendGrid `processed` events `digest web` has kept: one per recipient it took."""
    store = room.store()
    try:
        with store.begin() as conn:
            query = "SELECT count(*) FROM sendgrid_events WHERE event = 'processed'"
            return int(conn.scalar(text(query)) or 0)
    finally:
        store.close()


def test_sigkills_then_sendgrid_s_events_settle_what_was_in_doubt_and_nobody_gets_two(
    tmp_path: Path,
) -> None:
    batch = 500
    room = Newsroom(
        tmp_path / "newsroom",
        batch_size=batch,
        recipients=10_000,
        delivery="event_wait_seconds = 2",
    )
    key = WebhookKey()
    web = room.web(key.verification_key)
    record = tmp_path / "delivered.tsv"
    server = start_server(
        record, "--respond-delay", "0.1", "--events-url", f"{web.url}/webhooks/sendgrid",  # type: ignore[attr-defined]
        "--events-key", str(key.save(tmp_path / "signing.pem")),
    )  # fmt: skip
    try:
        room.env["SENDGRID_API_HOST"] = server_url(server)
        # Four kills, each right after SendGrid took a batch and before its answer
        # came back: the moment that leaves a batch in doubt although it went out.
        kills = 0
        in_doubt: set[int] = set()  # every batch a kill left in doubt
        for _ in range(4):
            target = lines(record) + 2 * batch
            sender = room.start("send", EDITION, *(["--resume"] if kills else []))
            kills += kill_when(sender, lambda target=target: lines(record) >= target)
            in_doubt.update(room.report()["in_doubt_batches"])  # type: ignore[arg-type]
        assert kills == 4, "a send finished before its kill point"
        assert in_doubt, "the kills left nothing in doubt"

        # SendGrid posts its events for everything it took, whatever became of us.
        wait_until(lambda: _processed(room) == lines(record), "SendGrid's events", 30)
        resumed = room.digest("send", EDITION, "--resume")
        if resumed.returncode != 0:
            # Left: batches claimed whose request never left. No event will come for
            # them; once the wait is over they are the operator's.
            assert "no SendGrid event" in resumed.stdout, resumed.stdout
            _wait_for_events_due(room)
            later = room.digest("send", EDITION, "--resume")
            assert later.returncode == 1 and "--retry-in-doubt" in later.stdout, later.stdout
            assert "most likely never took" in later.stdout, later.stdout
            resumed = room.digest("send", EDITION, "--resume", "--retry-in-doubt")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        report = room.report()
        shown = room.digest("sends", EDITION)
    finally:
        server.terminate()
        server.wait(timeout=20)
        web.terminate()
        web.wait(timeout=20)
    got = Counter(d.email for d in read_record(record))
    print(f"in doubt after the kills: {sorted(in_doubt)}; settled by events: "
          f"{report['settled_by_events']}")  # fmt: skip
    assert (report["state"], report["in_doubt"], report["sent"]) == ("done", 0, len(room.emails))
    assert sorted(got) == sorted(room.emails) and set(got.values()) == {1}
    settled = report["settled_by_events"]
    assert settled and set(settled) <= in_doubt  # type: ignore[arg-type]
    assert "settled by events" in shown.stdout
    assert ", ".join(map(str, settled[:10])) in shown.stdout  # type: ignore[index]


def _wait_for_events_due(room: Newsroom) -> None:
    """Sleep until the batches in doubt have waited [delivery] event_wait_seconds."""
    due = str(room.report()["events_due"])
    if due:
        time.sleep(max(0.0, (datetime.fromisoformat(due) - datetime.now(UTC)).total_seconds()))
        time.sleep(1.1)  # the due time is to the second


def test_without_events_a_batch_in_doubt_waits_then_stays_for_the_operator(
    tmp_path: Path, server: tuple[str, Path, subprocess.Popen[str]]
) -> None:
    url, record, _process = server
    room = Newsroom(
        tmp_path / "newsroom", batch_size=500, recipients=4000, delivery="event_wait_seconds = 8"
    )
    room.env["SENDGRID_API_HOST"] = url
    sender = room.start("send", EDITION)
    assert kill_when(sender, lambda: lines(record) >= 1000)
    resumed = room.digest("send", EDITION, "--resume")
    assert resumed.returncode == 1
    # Said once, in the words an operator acts on, with the bound on how much a crash
    # can leave in doubt and the setting behind it.
    out = " ".join(resumed.stdout.split())
    assert "no SendGrid event yet" in out and "again after" in out, out
    assert "a crash leaves at most 2 batches of up to 500 in doubt" in out
    assert "[delivery] concurrency = 2" in out
    shown = " ".join(room.digest("sends", EDITION).stdout.split())
    assert "no SendGrid event yet" in shown and "event_wait_seconds" in shown, shown
    _wait_for_events_due(room)
    later = room.digest("send", EDITION, "--resume")
    out = " ".join(later.stdout.split())
    assert later.returncode == 1
    assert "most likely never took" in out and "--retry-in-doubt" in out, out
    report = room.report()
    assert report["in_doubt"] and report["settled_by_events"] == []
    assert report["sent"] + report["in_doubt"] == 4000  # type: ignore[operator]
    got = Counter(d.email for d in read_record(record))
    assert max(got.values()) == 1


# -- the database blinks: `digest send` against one that restarts, stops or locks ---------


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.PrivateCluster]:
    problem = postgres.usable()
    need(not problem, problem)
    private = postgres.PrivateCluster()
    yield private
    private.close()


def _one_error_line(stderr: str) -> str:
    """The send's own last word: exactly one error line, and no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_postgresql_restarted_mid_send(tmp_path: Path, cluster: postgres.PrivateCluster) -> None:
    room = Newsroom(tmp_path / "newsroom", database_url=cluster.database(), recipients=20_000)
    record = tmp_path / "delivered.tsv"
    server = start_server(record, "--respond-delay", "0.2")
    try:
        room.env["SENDGRID_API_HOST"] = server_url(server)
        sender = room.start("send", EDITION, output=True)
        wait_until(lambda: lines(record) >= 2000 or sender.poll() is not None, "a first batch")
        assert sender.poll() is None, "the send finished before the restart"
        cluster.restart(down_for=2.0)  # every session cut, two seconds without a server
        out, err = sender.communicate(timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert sender.returncode == 0, out + err
    assert "Traceback" not in err
    assert "the database is unavailable" in err and "the database is back" in err, err
    report = room.report()
    assert (report["state"], report["in_doubt"], report["sent"]) == ("done", 0, 20_000)
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails) and set(got.values()) == {1}


def test_postgresql_gone_longer_than_the_retry_stops_in_one_line_and_a_resume_finishes(
    tmp_path: Path, cluster: postgres.PrivateCluster
) -> None:
    room = Newsroom(
        tmp_path / "newsroom",
        database_url=cluster.database(),
        batch_size=500,
        recipients=10_000,
        delivery="ledger_retry_seconds = 2\nevent_wait_seconds = 600",
    )
    # SendGrid's events reach `digest web`, which answers 503 while the database is away
    # and is posted to again, as SendGrid retries, until it is back.
    key = WebhookKey()
    web = room.web(key.verification_key)
    record = tmp_path / "delivered.tsv"
    server = start_server(
        record, "--respond-delay", "0.2", "--events-url", f"{web.url}/webhooks/sendgrid",  # type: ignore[attr-defined]
        "--events-key", str(key.save(tmp_path / "signing.pem")), "--events-kinds", "processed",
    )  # fmt: skip
    try:
        room.env["SENDGRID_API_HOST"] = server_url(server)
        sender = room.start("send", EDITION, output=True)
        wait_until(lambda: lines(record) >= 1000 or sender.poll() is not None, "a first batch")
        assert sender.poll() is None, "the send finished before the database went away"
        cluster.stop()
        out, err = sender.communicate(timeout=60)
        cluster.start()
        assert sender.returncode == 1, out + err
        line = _one_error_line(err)
        assert "the database was unreachable for 2 s" in line
        assert f"run `digest send {EDITION} --resume` once it is back" in line
        store_url = room.env["DIGEST_DATABASE_URL"]
        assert store_url.rsplit("/", 1)[0] not in line  # no connection details

        wait_until(lambda: _processed(room) == lines(record), "SendGrid's events", 30)
        resumed = room.digest("send", EDITION, "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        report = room.report()
    finally:
        server.terminate()
        server.wait(timeout=20)
        web.terminate()
        web.wait(timeout=20)
    assert (report["state"], report["in_doubt"], report["sent"]) == ("done", 0, 10_000)
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails) and set(got.values()) == {1}


#: SQLite waits this long for a lock on its own (store._sqlite_pragmas' busy_timeout);
#: only a lock held longer reaches the ledger's retries.
SQLITE_BUSY_SECONDS = 30


def test_a_sqlite_lock_held_longer_than_its_busy_timeout(tmp_path: Path) -> None:
    room = Newsroom(tmp_path / "newsroom", batch_size=100, recipients=2000)
    record = tmp_path / "delivered.tsv"
    server = start_server(record, "--respond-delay", "0.3")
    database = room.env["DIGEST_DATABASE_URL"].removeprefix("sqlite:///")
    try:
        room.env["SENDGRID_API_HOST"] = server_url(server)
        sender = room.start("send", EDITION, output=True)
        wait_until(lambda: lines(record) >= 300 or sender.poll() is not None, "a first batch")
        assert sender.poll() is None, "the send finished before the lock"
        # Another process (an import, a backup, someone's sqlite3 shell) takes the
        # write lock and keeps it past busy_timeout.
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             f"db = sqlite3.connect({database!r}, timeout=60, isolation_level=None)\n"
             "db.execute('BEGIN EXCLUSIVE')\n"
             "print('locked', flush=True)\n"
             f"time.sleep({SQLITE_BUSY_SECONDS + 2})\n"
             "db.execute('ROLLBACK')\n"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        locked_at = lines(record)
        out, err = sender.communicate(timeout=120)
        holder.wait(timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert sender.returncode == 0, out + err
    assert "Traceback" not in err and "database is locked" in err, err
    assert locked_at < 2000  # the lock came mid-send
    report = room.report()
    assert (report["state"], report["in_doubt"], report["sent"]) == ("done", 0, 2000)
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails) and set(got.values()) == {1}
