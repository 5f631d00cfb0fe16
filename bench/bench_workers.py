"""Benchmark: `digest worker` processes sharing one send on PostgreSQL, 1 against 4.

The send is snapshotted once per run (a fresh send of the same edition to the same
N subscribers), put in the `sending` state, and then k `digest worker --once`
processes are started at the same moment; each sends through the SendGrid backend
to a SendGrid-compatible server of its own (tests/fakes/sendgrid_server.py, one
process per worker, so the fake is not the one shared bottleneck: SendGrid itself
scales out). The figure is N over the wall time from starting the workers to the
last one's exit. Beside it, measured in the same run: one worker alone (the
reference, and the per-worker rate), and k workers that find nothing to send
(their start-up and shutdown, included in every figure; shown so it can be taken
off). No rate cap.

Wall time on a shared machine says as much about the other tenants as about us, so
each run also counts CPU seconds (getrusage of the children): the workers' per
recipient, their start-up taken off, is what one worker can send per core it has
to itself; the fake servers' is shown apart.

    .venv/bin/python bench/bench_workers.py [--recipients 200000] [--workers 4] [--runs 3]

PostgreSQL: DIGEST_BENCH_DATABASE_URL, else DIGEST_TEST_DATABASE_URL, else
postgresql+psycopg://postgres@127.0.0.1:5432/test; the benchmark works in a schema
of its own and drops it afterwards. Without one, it says so in one line.

Its lines in `make bench` (rows()): one worker process beside the bare reference of
bench_send.py (the request bodies built and encoded, no database, no network) for as
many recipients, and 4 workers beside that one worker of the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from bench_send import bare_bodies, newsroom as send_newsroom
from measure import DIGEST, ROOT, Row, postgres_url, quick
from sqlalchemy import create_engine, text

from digest import config
from digest.send.ledger import open_send
from digest.store import Store

DAY = date(2025, 12, 5)
KEY = "SG.bench-key"
#: The longest a run of workers may take before they are killed.
WORKER_TIMEOUT = 600.0


def database() -> tuple[str, str]:
    """(the URL of a new schema, the server's URL) in the benchmark's PostgreSQL."""
    base = postgres_url()
    schema = "bench_" + uuid.uuid4().hex[:10]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", base


def drop(base: str, url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def newsroom(folder: Path, url: str, recipients: int) -> tuple[config.Settings, dict[str, str]]:
    """bench_send's newsroom (an edition drafted, `recipients` readers), sent through
    SendGrid by whichever `digest worker` claims a batch."""
    config_path, env = send_newsroom(folder, recipients, url)
    env = {**env, "DIGEST_BACKEND": "sendgrid", "DIGEST_CONFIG": str(config_path)}
    return config.load(config_path, env=env), env


def fresh_send(settings: config.Settings) -> None:
    """Forget the last run's send and snapshot a new one, ready for workers to join."""
    store = Store.open(settings.database_url)
    edition = DAY.isoformat()
    with store.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM send_batches WHERE send_id IN "
                "(SELECT id FROM sends WHERE edition = :e)"
            ),
            {"e": edition},
        )
        conn.execute(text("DELETE FROM send_rate_buckets"))
        conn.execute(text("DELETE FROM sends WHERE edition = :e"), {"e": edition})
    send_id, _ = open_send(store, edition, "sendgrid", settings.delivery.batch_size)
    store.editions.set_edition_status(edition, "sending")
    store.sends.set_send_state(send_id, "sending")
    store.close()


def servers(count: int) -> list[tuple[subprocess.Popen[str], str]]:
    started = []
    for _ in range(count):
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.sendgrid_server", "--port", "0", "--api-key", KEY],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        started.append((server, server.stdout.readline().split()[-1]))
    return started


def delivered(started: list[tuple[subprocess.Popen[str], str]]) -> int:
    """Stop the servers; how many recipients they took in all."""
    total = 0
    for server, _url in started:
        server.terminate()
        _out, err = server.communicate(timeout=30)
        # "requests: X, accepted: Y, recipients: Z"
        total += int(err.strip().rsplit(" ", 1)[-1])
    return total


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def workers(env: dict[str, str], count: int, work: Path) -> tuple[float, int, float, float]:
    """`digest worker --once` × count at once, each to its own server: (seconds,
    recipients delivered, CPU seconds of the workers, CPU seconds of the servers)."""
    started = servers(count)
    cpu = children_cpu()
    logs = [(work / f"worker{i}.log").open("w") for i in range(count)]
    try:
        begun = time.perf_counter()
        processes = [
            subprocess.Popen(
                [DIGEST, "worker", "--once", "-c", env["DIGEST_CONFIG"]],
                env={**env, "SENDGRID_API_HOST": url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for (_server, url), log in zip(started, logs, strict=True)
        ]
        deadline = time.monotonic() + WORKER_TIMEOUT
        try:
            codes = [process.wait(max(1.0, deadline - time.monotonic())) for process in processes]
        except subprocess.TimeoutExpired:
            for process in processes:
                process.kill()
                process.wait()
            raise SystemExit(
                f"workers still running after {WORKER_TIMEOUT:.0f} s: killed"
            ) from None
        seconds = time.perf_counter() - begun
    finally:
        for log in logs:
            log.close()
        worker_cpu = children_cpu() - cpu  # the servers are not reaped yet
        got = delivered(started)
    if any(codes):
        raise SystemExit(f"a worker failed: see {work}/worker*.log")
    return seconds, got, worker_cpu, children_cpu() - cpu - worker_cpu


def measure(args: argparse.Namespace) -> dict[int, float]:
    """Recipients per second with 1 worker and with `args.workers` (medians of runs)."""
    args.work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=args.work))
    url, base = database()
    try:
        settings, env = newsroom(folder, url, args.recipients)
        idle_runs = [workers(env, args.workers, folder) for _ in range(args.runs)]
        idle = statistics.median(r[0] for r in idle_runs)
        startup_cpu = statistics.median(r[2] for r in idle_runs) / args.workers
        print(
            f"{args.workers} workers with nothing to send: {idle:.2f} s; "
            f"{startup_cpu:.2f} CPU s each (start-up and shutdown)"
        )
        rates: dict[int, float] = {}
        for count in (1, args.workers):
            times, costs, server_costs = [], [], []
            for run in range(1, args.runs + 1):
                fresh_send(settings)
                seconds, got, worker_cpu, server_cpu = workers(env, count, folder)
                if got != args.recipients:
                    raise SystemExit(f"the servers got {got:,} recipients, not {args.recipients:,}")
                times.append(seconds)
                # What sending costs a worker, its start-up taken off.
                costs.append((worker_cpu - count * startup_cpu) / args.recipients)
                server_costs.append(server_cpu / args.recipients)
                print(
                    f"{count} worker(s), run {run}: {seconds:.2f} s, "
                    f"{args.recipients / seconds:,.0f} recipients/s; CPU per recipient: "
                    f"workers {costs[-1] * 1e6:.1f} µs (start-up off), "
                    f"fake SendGrid {server_costs[-1] * 1e6:.1f} µs",
                    flush=True,
                )
            rates[count] = args.recipients / statistics.median(times)
            cost = statistics.median(costs)
            print(
                f"{count} worker(s) on PostgreSQL, {args.recipients:,} recipients, median of "
                f"{args.runs}: {rates[count]:,.0f} recipients/s "
                f"({rates[count] / count:,.0f} per worker); a worker's CPU "
                f"{cost * 1e6:.1f} µs per recipient: {1 / cost:,.0f}/s per core it has "
                f"to itself; the fake server's {statistics.median(server_costs) * 1e6:.1f} µs",
                flush=True,
            )
        print(
            f"{args.workers} workers: {rates[args.workers]:,.0f}/s; reference, 1 worker in the "
            f"same run: {rates[1]:,.0f}/s; ratio {rates[args.workers] / rates[1]:.2f} "
            f"on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f})"
        )
    finally:
        drop(base, url)
        shutil.rmtree(folder, ignore_errors=True)
    return rates


def rows() -> list[Row]:
    recipients, runs = (2_000, 1) if quick() else (200_000, 3)
    args = argparse.Namespace(
        recipients=recipients, workers=4, runs=runs, work=ROOT / "var" / "bench"
    )
    rates = measure(args)
    bare = recipients / statistics.median(bare_bodies(recipients) for _ in range(runs))
    print(f"bodies + orjson alone, {recipients:,} recipients: {bare:,.0f}/s", flush=True)
    return [
        Row(f"send {recipients:,} via the SendGrid API, PostgreSQL ledger, one process "
            "(`digest worker`)", rates[1], bare, "recipients/s", "bodies + orjson, no network",
            goal="≥ 60,000/s"),
        Row(f"same, 4 `digest worker` processes (each its own fake SendGrid; {os.cpu_count()} "
            "cores)", rates[4], rates[1], "recipients/s", "1 worker, same run",
            goal="≥ 150,000/s"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
