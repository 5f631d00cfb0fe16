"""Benchmark: import a subscribers CSV of N rows (default 1,000,000) into SQLite and
PostgreSQL.

Runs `digest subscribers import` as its own process, as an operator would, and
prints rows per second and the peak memory (max RSS) of that process. Beside it, in
the same run and also as its own process, the bare reference: `csv.reader` and the
driver's `executemany` into a table of the same five text columns, nothing checked.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--runs 3] [--no-postgres]

PostgreSQL: DIGEST_BENCH_DATABASE_URL, else DIGEST_TEST_DATABASE_URL, else
postgresql+psycopg://postgres@127.0.0.1:5432/test (bench/measure.py); each run gets a
schema of its own, dropped afterwards. Without one, the SQLite lines alone.

The CSV is generated once (a fixed seed) and kept in the work folder; about 1 in
200 rows is a bad address, 1 in 100 repeats an earlier one, 1 in 20 is unsubscribed.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from measure import ROOT, Row, Skip, postgres_url, quick, run_child, run_digest, sample_newsroom

# The reference: the same file through csv.reader into a plain table, in batches of
# 5,000 rows, one transaction; argv: csv path, database ("sqlite:PATH" or a libpq URL).
REFERENCE = """
import csv, itertools, sys
path, target = sys.argv[1], sys.argv[2]
if target.startswith("sqlite:"):
    import sqlite3
    conn = sqlite3.connect(target[7:])
    insert = "INSERT INTO ref VALUES (?, ?, ?, ?, ?)"
else:
    import psycopg
    conn = psycopg.connect(target)
    insert = "INSERT INTO ref VALUES (%s, %s, %s, %s, %s)"
conn.execute("CREATE TABLE ref (email TEXT PRIMARY KEY, name TEXT, sections TEXT,"
             " status TEXT, city TEXT)")
with open(path, newline="", encoding="utf-8") as handle:
    reader = csv.reader(handle)
    next(reader)
    cur = conn.cursor()
    while batch := list(itertools.islice(reader, 5000)):
        cur.executemany(insert + (" ON CONFLICT DO NOTHING"), batch)
conn.commit()
"""


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(3)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "sections", "status", "city"])
        for i in range(rows):
            if i % 200 == 199:
                email = f"broken{i}@@example.com"
            elif i % 100 == 98:  # an address from earlier in the file, in other capitals
                j = rng.randrange(i) // 100 * 100  # a row that is neither broken nor a repeat
                email = f"reader.{j}@EXAMPLE{j % 97}.COM"
            else:
                email = f"Reader.{i}@Example{i % 97}.com"
            writer.writerow(
                [
                    email,
                    f"Reader Number {i}",
                    "News;Politics" if i % 3 == 0 else "",
                    "unsubscribed" if i % 20 == 19 else "active",
                    rng.choice(["Juneau", "Douglas", "Sitka", ""]),
                ]
            )


@contextmanager
def database(kind: str, folder: Path) -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URL for digest, target for the reference): a new, empty database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'digest.db'}", f"sqlite:{folder / 'ref.db'}"
        return
    import psycopg

    server = postgres_url()
    schema = "bench_" + uuid.uuid4().hex[:12]
    libpq = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in server else "?"
    try:
        yield (
            f"{server}{sep}options=-csearch_path%3D{schema}",
            f"{libpq}{sep}options=-csearch_path%3D{schema}",
        )
    finally:
        with psycopg.connect(libpq, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_once(csv_path: Path, work: Path, kind: str = "sqlite") -> tuple[float, float, str, float]:
    """(seconds, peak MB, summary, reference seconds) of one import into a new database."""
    folder = Path(tempfile.mkdtemp(dir=work))
    config = sample_newsroom(folder)
    try:
        with database(kind, folder) as (url, target):
            env = {**os.environ, "DIGEST_DATABASE_URL": url}
            # Create the schema first so the timing is the import alone.
            run_digest("subscribers", "list", "-c", config, env=env)
            measured = run_digest("subscribers", "import", csv_path, "-c", config, env=env)
            started = time.perf_counter()
            run_child([sys.executable, "-c", REFERENCE, str(csv_path), target])
            reference = time.perf_counter() - started
    finally:
        shutil.rmtree(folder)
    return measured.seconds, measured.peak_mb, measured.stdout, reference


def measure(rows: int, runs: int, kind: str, work: Path) -> tuple[float, float, float]:
    """(rows/s, peak MB, reference rows/s): medians of `runs` runs into `kind`."""
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / f"subscribers-{rows}.csv"
    if not csv_path.exists():
        print(f"writing {csv_path} ...", file=sys.stderr)
        make_csv(csv_path, rows)
    rates, peaks, references = [], [], []
    for run in range(1, runs + 1):
        elapsed, peak_mb, summary, reference = run_once(csv_path, work, kind)
        rates.append(rows / elapsed)
        peaks.append(peak_mb)
        references.append(rows / reference)
        print(
            f"{kind} run {run}: {elapsed:.1f} s, {rows / elapsed:,.0f} rows/s, "
            f"peak RSS {peak_mb:.0f} MB; reference {rows / reference:,.0f} rows/s  ({summary})",
            flush=True,
        )
    rate, peak, ref = (statistics.median(x) for x in (rates, peaks, references))
    print(
        f"import of {rows:,} rows into {kind}, median of {runs}: {rate:,.0f} rows/s, "
        f"peak RSS {peak:.0f} MB; reference {ref:,.0f} rows/s",
        flush=True,
    )
    return rate, peak, ref


def rows(count: int = 1_000_000, runs: int = 2) -> list[Row]:
    """SQLite at `count` rows and at a tenth of it (is the memory flat?), then PostgreSQL
    at `count` if there is one (one line says so if not)."""
    if quick():
        count, runs = 5_000, 1
    work = ROOT / "var" / "bench"
    _rate, small_peak, _ref = measure(count // 10, 1, "sqlite", work)
    rate, peak, ref = measure(count, runs, "sqlite", work)
    table = [
        Row(f"import {count:,} subscribers, SQLite (peak {peak:.0f} MB; "
            f"{small_peak:.0f} MB at {count // 10:,})", rate, ref,
            "rows/s", "`csv.reader` + `executemany`", goal="≥ 100,000 rows/s, memory flat"),
    ]  # fmt: skip
    try:  # one run: a million rows into PostgreSQL and its reference take 2 minutes
        rate, peak, ref = measure(count, 1, "postgresql", work)
    except Skip as why:
        print(f"import into PostgreSQL: not run: {why}", flush=True)
        return table
    table.append(
        Row(f"import {count:,} subscribers, PostgreSQL (one run; peak {peak:.0f} MB)", rate, ref,
            "rows/s", "`csv.reader` + `executemany`", goal="≥ 100,000 rows/s, memory flat")
    )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    for kind in ("sqlite",) if args.no_postgres else ("sqlite", "postgresql"):
        measure(args.rows, args.runs, kind, args.work)


if __name__ == "__main__":
    main()
