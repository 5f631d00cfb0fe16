"""Benchmark: `digest --help`, the CLI's start-up, beside `python -c pass`.

Each is run as its own process, `--runs` times, alternately; prints the medians.
What the start-up imports: `python -X importtime -m digest.cli --help`.

    .venv/bin/python bench/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from measure import DIGEST, Row, quick


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60
    )
    return time.perf_counter() - started


def measure(runs: int) -> tuple[float, float]:
    """(digest --help, python -c pass): the median seconds of `runs` runs each."""
    helps, bare = [], []
    for _ in range(runs):
        helps.append(_timed([str(DIGEST), "--help"]))
        bare.append(_timed([sys.executable, "-c", "pass"]))
    return statistics.median(helps), statistics.median(bare)


def rows(runs: int = 15) -> list[Row]:
    if quick():
        runs = 3
    helps, bare = measure(runs)
    print(f"digest --help: {helps * 1000:.0f} ms; python -c pass: {bare * 1000:.0f} ms")
    return [
        Row("`digest --help`", helps * 1000, bare * 1000, "ms", "`python -c pass`",
            higher_is_better=False, goal="< 150 ms"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    rows(parser.parse_args().runs)


if __name__ == "__main__":
    main()
