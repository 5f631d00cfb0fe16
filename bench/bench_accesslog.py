"""Benchmark: read a web server access log into page views (digest/collect/accesslogs.py).

Generates a combined-format log of N lines (20,000 visitors reading 300 stories over
a day and a half, with some assets and a robot: nearly every line a new view, the
costliest case), then reads it in a fresh process per run. Prints lines per second
and the reading process's peak RSS.

    .venv/bin/python bench/bench_accesslog.py [--lines 1000000 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

from measure import ROOT, Row, quick, run_child

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:{0}.0) Gecko/20100101 Firefox/{0}.0"
READ = r"""
from measure import peak_kb
import sys, time
from zoneinfo import ZoneInfo
from digest.collect.accesslogs import read_access_logs
started = time.perf_counter()
read = read_access_logs(sys.argv[1], "https://news.example.org/", ZoneInfo("America/Juneau"))
seconds = time.perf_counter() - started
peak = peak_kb() / 1024  # VmHWM (bench/measure.py: not ru_maxrss)
# The bare reference: each line matched by one compiled regular expression of the
# combined format, nothing else (no dates, no URLs, no visitors counted).
import re
combined = re.compile(
    r'(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\S+) "([^"]*)" "([^"]*)"'
)
started = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as handle:
    matched = sum(1 for line in handle if combined.match(line))
bare = time.perf_counter() - started
print(seconds, peak, read.files[0].lines, read.files[0].views, bare, matched)
"""


def write_log(path: Path, lines: int) -> None:
    rnd = random.Random(7)
    agents = [AGENT.format(v) for v in range(80, 130)]
    agents.append("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    visitors = [(f"10.{n % 250}.{n // 250}.{n % 7}", rnd.choice(agents)) for n in range(20_000)]
    paths = [f"/news/story-{n}/" for n in range(300)] + ["/static/site.css", "/img/logo.png"]
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            ip, agent = rnd.choice(visitors)
            minute = i * 2160 // lines
            out.write(
                f"{ip} - - [{4 + minute // 1440:02d}/Dec/2025:{minute // 60 % 24:02d}:"
                f'{minute % 60:02d}:00 +0000] "GET {rnd.choice(paths)} HTTP/1.1" 200 5120 '
                f'"https://news.example.org/" "{agent}"\n'
            )


def measure(sizes: list[int], runs: int) -> dict[int, tuple[float, float, float]]:
    """For each number of lines: (lines/s, peak MB, bare regex lines/s), medians of `runs`."""
    found = {}
    with tempfile.TemporaryDirectory() as work:
        for lines in sizes:
            log = Path(work) / f"access-{lines}.log"
            write_log(log, lines)
            size = log.stat().st_size / 2**20
            results = []
            for run in range(1, runs + 1):
                out = run_child(
                    [sys.executable, "-c", READ, str(log)],
                    cwd=ROOT, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT / "bench")},
                )  # fmt: skip
                seconds, peak, _lines, views, bare, matched = out.split()
                if int(matched) != lines:
                    raise SystemExit(f"the reference matched {matched} of {lines:,} lines")
                results.append((float(seconds), float(peak), float(bare)))
                print(
                    f"{lines:,} lines ({size:.0f} MB), run {run}: {float(seconds):.2f} s, "
                    f"{lines / float(seconds):,.0f} lines/s, {int(views):,} views, "
                    f"peak RSS {float(peak):.0f} MB; bare regex {lines / float(bare):,.0f} lines/s",
                    flush=True,
                )
            median = statistics.median(s for s, _, _ in results)
            bare_median = statistics.median(b for _, _, b in results)
            peak = max(p for _, p, _ in results)
            print(
                f"{lines:,} lines, median of {runs}: {median:.2f} s, "
                f"{lines / median:,.0f} lines/s, peak RSS {peak:.0f} MB",
                flush=True,
            )
            found[lines] = (lines / median, peak, lines / bare_median)
    return found


def rows() -> list[Row]:
    large, small, runs = (2_000, 500, 1) if quick() else (1_000_000, 200_000, 3)
    found = measure([large, small], runs)
    rate, peak, bare = found[large]
    return [
        Row(f"read an access log of {large:,} lines into page views (peak {peak:.0f} MB; "
            f"{found[small][1]:.0f} MB at {small:,})", rate, bare, "lines/s",
            "one regex match a line", goal="(none set)"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 200_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    measure(args.lines, args.runs)


if __name__ == "__main__":
    main()
