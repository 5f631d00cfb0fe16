"""Benchmark: read a web server access log into page views (digest/collect/accesslogs.py).

Generates a combined-format log of N lines (20,000 visitors reading 300 stories over
a day and a half, with some assets and a robot: nearly every line a new view, the
costliest case), then reads it in a fresh process per run. Prints lines per second
and the reading process's peak RSS.

    .venv/bin/python bench/bench_accesslog.py [--lines 1000000 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import ROOT

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:{0}.0) Gecko/20100101 Firefox/{0}.0"
READ = """
import resource, sys, time
from zoneinfo import ZoneInfo
from digest.collect.accesslogs import read_access_logs
started = time.perf_counter()
read = read_access_logs(sys.argv[1], "https://news.example.org/", ZoneInfo("America/Juneau"))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(seconds, peak, read.files[0].lines, read.files[0].views)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 200_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for lines in args.lines:
            log = Path(work) / f"access-{lines}.log"
            write_log(log, lines)
            size = log.stat().st_size / 2**20
            results = []
            for run in range(1, args.runs + 1):
                done = subprocess.run(
                    [sys.executable, "-c", READ, str(log)],
                    cwd=ROOT, capture_output=True, text=True, check=True,
                )  # fmt: skip
                seconds, peak, _lines, views = done.stdout.split()
                results.append((float(seconds), float(peak)))
                print(
                    f"{lines:,} lines ({size:.0f} MB), run {run}: {float(seconds):.2f} s, "
                    f"{lines / float(seconds):,.0f} lines/s, {int(views):,} views, "
                    f"peak RSS {float(peak):.0f} MB",
                    flush=True,
                )
            median = statistics.median(s for s, _ in results)
            print(
                f"{lines:,} lines, median of {args.runs}: {median:.2f} s, "
                f"{lines / median:,.0f} lines/s, peak RSS {max(p for _, p in results):.0f} MB"
            )


if __name__ == "__main__":
    main()
