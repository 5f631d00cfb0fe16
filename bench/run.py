"""`make bench`: every benchmark, each figure beside a bare reference measured in the
same run, then one table of figure, reference and ratio.

    .venv/bin/python bench/run.py [--quick] [NAME ...]    # NAME: bench_import, bench_web ...

To add a benchmark: a module in bench/ with `rows() -> list[measure.Row]` (its default
sizes, or small ones when `measure.quick()`; it prints its own detail as it goes), named
in BENCHES. A benchmark that cannot run here raises `measure.Skip` (one line says why,
the others go on); any other failure is reported, the others go on, and the run exits
with status 1 at the end. Scripts that do not give rows yet are run as they are, after
the table's benchmarks, their output printed (at smaller sizes with --quick).

`--quick`: small sizes and one run of each, to prove the harness works (minutes, not the
figures to keep). The full run should take about 15 minutes on the idle 2-core machine
of docs/benchmarks.md (estimated from its parts; over 20 at load 5 to 8), and must stay
under 25: the sizes are chosen for that. Its results and the machine go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from measure import QUICK_ENV, Row, Skip, run_child

HERE = Path(__file__).resolve().parent

#: Modules with rows(): each contributes lines to the table.
BENCHES = [
    "bench_startup",
    "bench_import",
    "bench_render",
    "bench_collect_feeds",
    "bench_events",
]
#: Scripts without rows() yet: run as they are, their output printed, with the options
#: given here (full run, --quick). None left; kept for the next benchmark written as a
#: script first.
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {}
#: The benchmarks that were scripts before each gave its lines of the table.
BENCHES += [
    "bench_send",  # SQLite ledger
    "bench_workers",  # PostgreSQL: one process, then 4
    "bench_web",  # SQLite, then PostgreSQL
    "bench_accesslog",
    "bench_collect",
    "bench_pages",
    "bench_related",  # 50,000 stories indexed, then asked (about 4 minutes of it)
]
#: The longest a script of SCRIPTS may run before it is killed.
SCRIPT_TIMEOUT = 900.0


def table(rows: list[Row]) -> str:
    lines = [
        "| stage | figure | reference, same run | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.stage} | {row.figure:,.{_digits(row.figure)}f} {row.unit} "
            f"| {row.reference_name}: {row.reference:,.{_digits(row.reference)}f} "
            f"{row.reference_unit or row.unit} | {row.ratio:.2f} | {row.goal} |"
        )
    return "\n".join(lines)


def _digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run of each")
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench_import ...); none: all")
    args = parser.parse_args()
    if args.quick:
        os.environ[QUICK_ENV] = "1"
    only = set(args.names)
    unknown = only - set(BENCHES) - {s.removesuffix(".py") for s in SCRIPTS}
    if unknown:
        print(f"error: no benchmark named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    skipped: list[str] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in BENCHES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        begun = time.perf_counter()
        try:
            rows.extend(importlib.import_module(name).rows())
        except Skip as why:
            print(f"{name}: not run: {why}", flush=True)
            skipped.append(f"{name} ({why})")
        except (Exception, SystemExit) as exc:  # one benchmark's failure is not the others'
            print(f"{name}: FAILED: {exc}", flush=True)
            traceback.print_exc()
            failed.append(name)
        print(f"({name}: {time.perf_counter() - begun:.0f} s)", flush=True)
    for script, (full, small) in SCRIPTS.items():
        if only and script.removesuffix(".py") not in only:
            continue
        options = small if args.quick else full
        print(f"== {script} {' '.join(options)}", flush=True)
        try:
            command = [sys.executable, str(HERE / script), *options]
            print(run_child(command, timeout=SCRIPT_TIMEOUT, cwd=HERE), flush=True)
        except SystemExit as exc:
            print(f"{script}: FAILED: {exc}", flush=True)
            failed.append(script)
    load = os.getloadavg()
    print()
    print(
        f"{'quick run (small sizes, one run each: not figures to keep); ' if args.quick else ''}"
        f"{time.perf_counter() - started:.0f} s in all; {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print(table(rows))
    for line in skipped:
        print(f"not run: {line}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
