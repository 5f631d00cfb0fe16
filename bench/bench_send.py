"""Benchmark: send an edition to N subscribers through the SendGrid backend.

The mail API is our SendGrid-compatible server (tests/fakes/sendgrid_server.py),
run as its own process on 127.0.0.1; the ledger is a SQLite file. The send is
`digest send EDITION --backend sendgrid`, run as its own process as an operator
would (with `--database postgresql+psycopg://...` the ledger is a fresh schema in that
PostgreSQL database instead, dropped afterwards); its wall time covers start-up,
rendering, the recipient snapshot and every request. Prints recipients per second
and that process's peak memory (max RSS).

    .venv/bin/python bench/bench_send.py [--recipients 1000000 100000] [--runs 3]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Two sizes show how the cost grows: the difference between them, divided by the
difference in recipients, is the cost of one more recipient.

Its line in `make bench` (rows()): a million recipients on SQLite, the peak memory at
a hundred thousand beside it, and the bare reference of the same run: the request
bodies built and encoded with orjson for as many recipients (a personalization each,
its unsubscribe URL signed), no database, no network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import orjson
from measure import ROOT, Row, quick, run_digest, sample_newsroom

from digest import config, jobs
from digest.models import Subscriber
from digest.subscribers import token_signer

DAY = date(2025, 12, 5)
KEY = "SG.bench-key"


@contextmanager
def database(folder: Path, server: str | None) -> Iterator[str]:
    """A SQLite file in `folder`, or a fresh schema on the PostgreSQL `server`, dropped after."""
    if not server:
        yield f"sqlite:///{folder / 'digest.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = "bench_" + uuid.uuid4().hex[:12]
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def newsroom(folder: Path, recipients: int, url: str = "") -> tuple[Path, dict[str, str]]:
    """A sample newsroom with an edition drafted and `recipients` active subscribers."""
    config_path = sample_newsroom(folder)
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": url or f"sqlite:///{folder / 'digest.db'}",
        "DIGEST_SECRET_KEY": "bench-secret",
        "SENDGRID_API_KEY": KEY,
    }
    settings = config.load(config_path, env=env)
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.draft(settings, store, DAY)
    chunk = 10_000
    for start in range(0, recipients, chunk):
        store.subscribers.import_subscribers(
            [
                Subscriber(f"reader{i:07d}@example{i % 97}.com", f"Reader Number {i}")
                for i in range(start, min(start + chunk, recipients))
            ]
        )
    store.close()
    return config_path, env


def bare_bodies(recipients: int, batch: int = 1000) -> float:
    """Seconds to build and encode the Mail Send bodies for `recipients` readers (the
    reference: what a send cannot do without), in this process; nothing is sent."""
    sign = token_signer(b"bench-secret")
    rest = orjson.dumps(
        {
            "from": {"email": "digest@news.example.org"},
            "subject": "The digest",
            "content": [
                {"type": "text/plain", "value": "x" * 4000},
                {"type": "text/html", "value": "<p>" + "y" * 60000 + "</p>"},
            ],
        }
    )[1:]
    size = 0
    started = time.perf_counter()
    for first in range(0, recipients, batch):
        args = {"edition": DAY.isoformat(), "batch": str(first // batch + 1)}
        people = []
        for i in range(first, min(first + batch, recipients)):
            email = f"reader{i:07d}@example{i % 97}.com"
            url = f"https://news.example.org/unsubscribe/{sign(email)}"
            greeting = f"Good morning, Reader Number {i}."
            people.append(
                {
                    "to": [{"email": email, "name": f"Reader Number {i}"}],
                    "substitutions": {
                        "%%greeting%%": greeting,
                        "%%greeting_text%%": greeting,
                        "%%unsubscribe_url%%": url,
                    },
                    "headers": {
                        "List-Unsubscribe": f"<{url}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    },
                    "custom_args": args,
                }
            )
        size += len(b'{"personalizations":' + orjson.dumps(people) + b"," + rest)
    return time.perf_counter() - started


def fake_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sendgrid_server", "--port", "0", "--api-key", KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().split()[-1]


def send(config_path: Path, env: dict[str, str], recipients: int) -> tuple[float, float, float]:
    """`digest send` of the drafted edition to our SendGrid server: (seconds, peak MB,
    CPU seconds); exits unless the server got every recipient."""
    server, api = fake_server()
    try:
        measured = run_digest(
            "send", DAY.isoformat(), "--backend", "sendgrid", "-c", config_path,
            env={**env, "SENDGRID_API_HOST": api},
        )  # fmt: skip
    finally:
        server.terminate()
        try:
            _, server_err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    delivered = int(server_err.strip().rsplit(" ", 1)[-1])
    if delivered != recipients:
        raise SystemExit(f"the server got {delivered:,} recipients, not {recipients:,}")
    return measured.seconds, measured.peak_mb, measured.cpu_seconds


def run_once(
    recipients: int, work: Path, server_url: str | None = None
) -> tuple[float, float, float]:
    """One send, in a new newsroom."""
    folder = Path(tempfile.mkdtemp(dir=work))
    with database(folder, server_url) as url:
        config_path, env = newsroom(folder, recipients, url)
        measured = send(config_path, env, recipients)
    shutil.rmtree(folder)
    return measured


def measure(recipients: int, runs: int, work: Path) -> tuple[float, float]:
    """(recipients/s, peak MB): the medians of `runs` sends on SQLite. The newsroom is
    made once; before each run its database is put back as it was (the edition drafted,
    nothing sent), in the same folder: a copy elsewhere made the send render the
    edition again (28 MB more, and the time of it)."""
    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        config_path, env = newsroom(folder, recipients)
        db = folder / "digest.db"
        shutil.copy(db, folder / "drafted.db")
        times, peaks = [], []
        for run in range(1, runs + 1):
            for leftover in ("digest.db-wal", "digest.db-shm"):
                (folder / leftover).unlink(missing_ok=True)
            shutil.copy(folder / "drafted.db", db)
            elapsed, peak, cpu = send(config_path, env, recipients)
            times.append(elapsed)
            peaks.append(peak)
            print(
                f"send {recipients:,} on SQLite, run {run}: {elapsed:.1f} s, "
                f"{recipients / elapsed:,.0f} recipients/s, peak RSS {peak:.0f} MB, "
                f"CPU {cpu:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return recipients / statistics.median(times), statistics.median(peaks)


def rows() -> list[Row]:
    """A million recipients on SQLite (the peak memory at 100,000 beside it), then the
    bare reference for as many recipients."""
    # Two runs of the million: three took 4.5 minutes of `make bench`'s 25 under load.
    large, small, runs = (2_000, 200, 1) if quick() else (1_000_000, 100_000, 2)
    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    _small_rate, small_peak = measure(small, runs + 1, work)
    rate, peak = measure(large, runs, work)
    bare = statistics.median(bare_bodies(large) for _ in range(runs))
    print(
        f"send {large:,} on SQLite: {rate:,.0f} recipients/s, peak {peak:.0f} MB "
        f"({small_peak:.0f} MB at {small:,}); bodies + orjson alone: {large / bare:,.0f}/s",
        flush=True,
    )
    return [
        Row(f"send {large:,} via the SendGrid API, SQLite ledger (peak {peak:.0f} MB; "
            f"{small_peak:.0f} MB at {small:,})", rate, large / bare, "recipients/s",
            "bodies + orjson, no network", goal="≥ 100,000/s, ≤ 100 MB flat"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, nargs="+", default=[1_000_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--database",
        help="a PostgreSQL URL (postgresql+psycopg://...): the ledger in a fresh schema there",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    medians: dict[int, float] = {}
    for recipients in args.recipients:
        times, peaks = [], []
        for run in range(1, args.runs + 1):
            elapsed, peak, cpu = run_once(recipients, args.work, args.database)
            times.append(elapsed)
            peaks.append(peak)
            print(
                f"{recipients:,} recipients, run {run}: {elapsed:.1f} s, "
                f"{recipients / elapsed:,.0f} recipients/s, peak RSS {peak:.0f} MB, "
                f"sending process CPU {cpu:.1f} s ({recipients / cpu:,.0f} recipients per CPU-s)",
                flush=True,
            )
        medians[recipients] = statistics.median(times)
        print(
            f"{recipients:,} recipients, median of {args.runs}: {medians[recipients]:.1f} s, "
            f"{recipients / medians[recipients]:,.0f} recipients/s, "
            f"peak RSS {statistics.median(peaks):.0f} MB (max {max(peaks):.0f})",
            flush=True,
        )
    if len(medians) >= 2:
        (small, t_small), (large, t_large) = (
            sorted(medians.items())[:1] + sorted(medians.items())[-1:]
        )
        per = (t_large - t_small) / (large - small)
        print(
            f"marginal cost: {per * 1e6:.1f} µs per recipient ({1 / per:,.0f} recipients/s); "
            f"fixed cost about {t_small - per * small:.1f} s"
        )


if __name__ == "__main__":
    main()
