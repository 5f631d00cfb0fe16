"""`make bench`: every benchmark, each figure beside a bare reference measured in the
same run, then one table of figure, reference and ratio.

To add a benchmark: a module in bench/ with `rows() -> list[measure.Row]` (its default
sizes; it prints its own detail as it goes), named in BENCHES. Scripts that do not give
rows yet are run as they are, after the table's benchmarks, their output printed.

The results and the machine they were measured on go in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from measure import Row

HERE = Path(__file__).resolve().parent

#: Modules with rows(): each contributes lines to the table.
BENCHES = [
    "bench_startup",
    "bench_import",
    "bench_render",
    "bench_collect_feeds",
    "bench_events",
]
#: Scripts without rows() yet: run with their default sizes, output printed as is.
SCRIPTS = [
    "bench_send.py",
    "bench_web.py",
    "bench_accesslog.py",
    "bench_collect.py",
    "bench_pages.py",
    "bench_related.py",
    "bench_workers.py",  # needs PostgreSQL (DIGEST_BENCH_DATABASE_URL or the tests')
]


def table(rows: list[Row]) -> str:
    lines = [
        "| stage | figure | reference, same run | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.stage} | {row.figure:,.{_digits(row.figure)}f} {row.unit} "
            f"| {row.reference_name}: {row.reference:,.{_digits(row.reference)}f} {row.unit} "
            f"| {row.ratio:.2f} | {row.goal} |"
        )
    return "\n".join(lines)


def _digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


def main() -> None:
    only = sys.argv[1:]  # names of benchmarks to run (bench_import ...); none: all
    rows: list[Row] = []
    for name in BENCHES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        rows.extend(importlib.import_module(name).rows())
    for script in SCRIPTS:
        if only and script.removesuffix(".py") not in only:
            continue
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], check=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
