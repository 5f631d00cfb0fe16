"""`make bench`: every benchmark, one after the other, with their default sizes.

The results and the machine they were measured on go in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    for script in (
        "bench_import.py",
        "bench_send.py",
        "bench_accesslog.py",
        "bench_collect.py",
        "bench_render.py",
        "bench_related.py",
    ):
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]], check=True)


if __name__ == "__main__":
    main()
