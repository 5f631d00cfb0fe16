"""Benchmark: import a subscribers CSV of N rows (default 1,000,000) into SQLite.

Runs `digest subscribers import` as its own process, as an operator would, and
prints rows per second and the peak memory (max RSS) of that process.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--runs 3]

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
from pathlib import Path

from measure import ROOT, run_digest, sample_newsroom


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


def run_once(csv_path: Path, work: Path) -> tuple[float, float, str]:
    folder = Path(tempfile.mkdtemp(dir=work))
    config = sample_newsroom(folder)
    env = {**os.environ, "DIGEST_DATABASE_URL": f"sqlite:///{folder / 'digest.db'}"}
    # Create the schema first so the timing is the import alone.
    run_digest("subscribers", "list", "-c", config, env=env)
    measured = run_digest("subscribers", "import", csv_path, "-c", config, env=env)
    shutil.rmtree(folder)
    return measured.seconds, measured.peak_mb, measured.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    csv_path = args.work / f"subscribers-{args.rows}.csv"
    if not csv_path.exists():
        print(f"writing {csv_path} ...", file=sys.stderr)
        make_csv(csv_path, args.rows)
    rates, peaks = [], []
    for run in range(1, args.runs + 1):
        elapsed, peak_mb, summary = run_once(csv_path, args.work)
        rates.append(args.rows / elapsed)
        peaks.append(peak_mb)
        print(
            f"run {run}: {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s, "
            f"peak RSS {peak_mb:.0f} MB  ({summary})"
        )
    print(
        f"import of {args.rows:,} rows, median of {args.runs}: "
        f"{statistics.median(rates):,.0f} rows/s, peak RSS {statistics.median(peaks):.0f} MB"
    )


if __name__ == "__main__":
    main()
