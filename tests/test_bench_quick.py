"""`make bench`'s harness works: `bench/run.py --quick` runs two of the cheapest
benchmarks and prints the table with a line for each, a benchmark that cannot run
says why in one line while the others go on, and an unknown name is a usage error.

The figures of a quick run are not checked (small sizes, a shared machine): only that
each line has a figure, a reference measured in the same run and their ratio.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^\| (?P<stage>[^|]+) \| (?P<figure>[\d,.]+) (?P<unit>\S+) \| (?P<ref_name>[^|]+): "
    r"(?P<reference>[\d,.]+) \S+ \| (?P<ratio>[\d.]+) \| (?P<goal>[^|]*) \|$"
)


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """bench/run.py ARGS, its output through a file (never a pipe), at most 120 s."""
    log = tmp_path / "bench.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "run.py"), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            timeout=120,
        )
    return done.returncode, log.read_text()


def _rows(output: str) -> dict[str, re.Match[str]]:
    return {m["stage"]: m for line in output.splitlines() if (m := ROW.match(line))}


def test_quick_run_prints_a_table_line_per_benchmark(tmp_path: Path) -> None:
    code, output = _bench(tmp_path, "--quick", "bench_startup", "bench_accesslog")
    assert code == 0, output
    assert "| stage | figure | reference, same run | ratio | goal |" in output
    rows = _rows(output)
    assert set(rows) == {
        "`digest --help`",
        next(stage for stage in rows if stage.startswith("read an access log of 2,000 lines")),
    }, output
    help_row = rows["`digest --help`"]
    assert help_row["unit"] == "ms" and help_row["goal"] == "< 150 ms"
    assert help_row["ref_name"] == "`python -c pass`"
    for row in rows.values():
        figure = float(row["figure"].replace(",", ""))
        reference = float(row["reference"].replace(",", ""))
        assert figure > 0 and reference > 0
        assert abs(float(row["ratio"]) - figure / reference) <= 0.01 + 0.01 * figure / reference
    assert "quick run" in output and "load average" in output


def test_a_benchmark_that_cannot_run_says_why_and_the_others_go_on(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: no PostgreSQL there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
    code, output = _bench(
        tmp_path,
        "--quick",
        "bench_workers",
        "bench_startup",
        env={"DIGEST_BENCH_DATABASE_URL": nowhere},
    )
    assert code == 0, output
    assert re.search(
        rf"^bench_workers: not run: no PostgreSQL at 127\.0\.0\.1:{port}", output, re.M
    )
    assert set(_rows(output)) == {"`digest --help`"}, output


def test_an_unknown_benchmark_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _bench(tmp_path, "--quick", "bench_nothing")
    assert code == 2
    assert output.strip() == "error: no benchmark named bench_nothing"
