"""Benchmark: render the demo edition (digest/render.py: Jinja2 -> MJML -> mjml-python ->
premailer, plus the text part and the post-render checks), at two commits, alternately.

Collects and drafts the sample newsroom once into SQLite (at this checkout), then, for
each code tree, runs a fresh process that loads the drafted edition and renders it
`--renders` times; prints the first render (it compiles the templates and loads Babel's
data), the median of the rest, and the HTML's size. Beside them, in the same process, a
bare reference: mjml-python and premailer on a one-paragraph MJML email, the floor any
render pays.

    .venv/bin/python bench/bench_render.py [--before 511e465] [--runs 3] [--renders 20]

`--before` is a commit of this repository; its tree is exported (`git archive`) to a
temporary folder and put first on PYTHONPATH, with its own templates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import ROOT, Row, quick, run_child, sample_newsroom

RENDER = """
import json, logging, statistics, sys, time
logging.disable(logging.WARNING)
from digest import config, jobs, render
from digest.store import Store
settings = config.load(sys.argv[1], env={"DIGEST_SECRET_KEY": "bench"})
store = Store.open(f"sqlite:///{settings.data_dir / 'digest.db'}")
edition = jobs.load_edition(store, "2025-12-05")
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    out = render.render(settings, edition)
    times.append(time.perf_counter() - started)
from mjml import mjml2html
from premailer import Premailer
BARE = "<mjml><mj-body><mj-section><mj-column><mj-text>Good morning.</mj-text>" \\
       "</mj-column></mj-section></mj-body></mjml>"
bare = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    Premailer(mjml2html(BARE), allow_network=False, keep_style_tags=True).transform()
    bare.append(time.perf_counter() - started)
print(json.dumps({"first": times[0], "warm": statistics.median(times[1:]),
                  "bare": statistics.median(bare[1:]), "html": len(out.html.encode()),
                  "text": len(out.text.encode())}))
"""


def measure(tree: Path, config_path: Path, renders: int) -> dict[str, float]:
    import json

    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = run_child(
        [sys.executable, "-c", RENDER, str(config_path), str(renders)],
        cwd=config_path.parent, env=env, timeout=300,
    )  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def drafted_newsroom(work: Path) -> Path:
    """The sample newsroom collected and drafted (2025-12-05) into SQLite: its config."""
    config_path = sample_newsroom(work / "newsroom")
    for command in (["collect"], ["draft", "--date", "2025-12-05"]):
        run_child(
            [sys.executable, "-m", "digest.cli", *command, "-c", str(config_path)],
            cwd=ROOT, env={**os.environ, "DIGEST_SECRET_KEY": "bench"}, timeout=300,
        )  # fmt: skip
    return config_path


def rows(runs: int = 3, renders: int = 20) -> list[Row]:
    """This checkout's render of the demo edition beside the bare MJML + premailer one."""
    if quick():
        runs, renders = 1, 5
    with tempfile.TemporaryDirectory() as work:
        config_path = drafted_newsroom(Path(work))
        got = [measure(ROOT, config_path, renders) for _ in range(runs)]
    warm = statistics.median(g["warm"] for g in got) * 1000
    bare = statistics.median(g["bare"] for g in got) * 1000
    first = statistics.median(g["first"] for g in got) * 1000
    print(f"render: first {first:.0f} ms, then {warm:.1f} ms; bare {bare:.2f} ms")
    return [
        Row(f"render the demo edition (warm; median of {renders - 1} renders × {runs})", warm,
            bare, "ms", "bare MJML + premailer", higher_is_better=False, goal="< 20 ms"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="511e465", help="the commit to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        before = Path(work) / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        config_path = drafted_newsroom(Path(work))
        trees = {f"before ({args.before})": before, "after (this checkout)": ROOT}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for run in range(1, args.runs + 1):
            for name, tree in trees.items():  # alternately, so a slow moment hits both
                got = measure(tree, config_path, args.renders)
                results[name].append(got)
                print(
                    f"run {run}, {name}: first {got['first'] * 1000:.0f} ms, then "
                    f"{got['warm'] * 1000:.1f} ms a render (bare MJML + premailer "
                    f"{got['bare'] * 1000:.1f} ms); HTML {got['html'] / 1024:.1f} KB, "
                    f"text {got['text'] / 1024:.1f} KB",
                    flush=True,
                )
        for name, got in results.items():
            warm = statistics.median(g["warm"] for g in got)
            bare = statistics.median(g["bare"] for g in got)
            first = statistics.median(g["first"] for g in got)
            print(
                f"{name}, median of {args.runs}: first {first * 1000:.0f} ms, then "
                f"{warm * 1000:.1f} ms a render, {warm / bare:.1f}x the bare reference "
                f"({bare * 1000:.1f} ms); HTML {got[-1]['html']:,} bytes"
            )


if __name__ == "__main__":
    main()
