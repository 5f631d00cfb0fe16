"""Benchmark: collect (digest/collect/) of the sample newsroom and of the real feeds in
the shared corpus, from files and over HTTP on 127.0.0.1.

Each run is a fresh process that loads the settings, warms up (each workload once, so
lazy imports and first parses are not timed), then times `collect_all` into a new
SQLite store for each workload, `--repeat` times, keeping the fastest. Beside each
figure, measured in the same process over the same sources, alternating with it, is a
bare reference: the bytes read (open().read(), or one httpx.Client's GETs) and parsed
by feedparser.parse (json.loads for a JSON Feed), nothing stored. The ratio collect /
bare is what collecting costs over parsing; compare it between commits rather than the
seconds, which move with the machine's load.

    .venv/bin/python bench/bench_collect.py [--runs 5] [--repeat 3]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/bench_collect.py   # another commit

The corpus (../shared/corpus/feeds-*, read only, as the tests read it) holds 36 feeds
and 4 JSON Feeds from two feed parsers' test suites: real news and blog feeds, some
broken on purpose (each of those is one error line in a collect, as in production).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from measure import ROOT, Row, Skip, quick, run_child, sample_newsroom

CORPUS = ROOT.parent / "shared" / "corpus"
NOT_SOURCES = (".md", ".opml")  # SOURCE.md, MANIFEST.json's kin, an OPML list of feeds

CHILD = r"""
import json, logging, shutil, sys, tempfile, time
from pathlib import Path
import feedparser, httpx
from digest import config
from digest.collect import collect_all
from digest.store import Store
from measure import peak_kb

job = json.loads(Path(sys.argv[1]).read_text())
# Warnings about odd entries go nowhere: the figure is the collect, not the terminal.
logging.getLogger("digest").addHandler(logging.NullHandler())
logging.getLogger("digest").propagate = False
settings = config.load(Path(job["toml"]), env={"DIGEST_SECRET_KEY": "bench"})
work = tempfile.mkdtemp()


def collect(name, load):
    store = Store.open(f"sqlite:///{work}/{name}.db")
    started = time.perf_counter()
    result = collect_all(settings, store, pages=[], access_logs=[], **load)
    seconds = time.perf_counter() - started
    store.close()
    return seconds, result.new + result.updated, len(result.failed_sources)


def bare(load, http):
    sources = load["feeds"] + load["cms"] + load["pageviews"]
    started = time.perf_counter()
    if http:
        with httpx.Client() as client:
            data = [client.get(source).content for source in sources]
    else:
        data = [Path(source).read_bytes() for source in sources]
    for source, body in zip(sources, data):
        if source in load["feeds"]:
            feedparser.parse(body)
        elif source in load["cms"]:
            try:
                json.loads(body)
            except ValueError:
                pass
    return time.perf_counter() - started


# Every workload once untimed: imports, codecs and feedparser's first parse of each
# kind of feed are start-up, not collecting.
for name, workload in job["workloads"].items():
    collect(f"warm-up {name}", workload["load"])
    bare(workload["load"], workload["http"])
# Collect and bare alternate, `repeat` times each; the fastest of each is the one least
# disturbed by whatever else the machine was doing (as timeit reports its minimum).
figures = {}
for name, workload in job["workloads"].items():
    collects, bares = [], []
    for attempt in range(job["repeat"]):
        seconds, stories, failed = collect(f"{name} {attempt}", workload["load"])
        collects.append(seconds)
        bares.append(bare(workload["load"], workload["http"]))
    figures[name] = {
        "collect": min(collects),
        "bare": min(bares),
        "stories": stories,
        "failed": failed,
    }
figures["peak_mb"] = peak_kb() / 1024  # VmHWM (bench/measure.py: not ru_maxrss)
shutil.rmtree(work)
print(json.dumps(figures))
"""


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on 127.0.0.1, from a thread of this process."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _child_env() -> dict[str, str]:
    """The environment with bench/ on PYTHONPATH after whatever checkout is put first."""
    paths = [os.environ.get("PYTHONPATH", ""), str(ROOT / "bench")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def corpus_sources() -> tuple[list[Path], list[Path]]:
    """(feeds, JSON Feeds) of the shared corpus, in name order."""
    files = sorted(
        path
        for folder in sorted(CORPUS.glob("feeds-*"))
        for path in folder.iterdir()
        if path.is_file() and not path.name.endswith(NOT_SOURCES) and path.name != "MANIFEST.json"
    )
    return [p for p in files if p.suffix != ".json"], [p for p in files if p.suffix == ".json"]


def workloads(site: Path, base: str) -> dict[str, dict[str, object]]:
    """The four workloads: the sample newsroom and the corpus, each from files and HTTP."""
    sample = site / "examples" / "sample-newsroom"
    feeds, cms = corpus_sources()

    def url(path: Path) -> str:
        return f"{base}/{path.relative_to(site)}"

    sample_load = {
        "feeds": [sample / "feed.xml"],
        "cms": [],
        "pageviews": [sample / "pageviews.csv"],
    }
    corpus_load = {
        "feeds": [site / "corpus" / p.parent.name / p.name for p in feeds],
        "cms": [site / "corpus" / p.parent.name / p.name for p in cms],
        "pageviews": [],
    }
    found: dict[str, dict[str, object]] = {}
    for name, load in (("sample newsroom", sample_load), ("corpus feeds", corpus_load)):
        found[f"{name}, files"] = {
            "http": False,
            "load": {kind: [str(p) for p in paths] for kind, paths in load.items()},
        }
        found[f"{name}, HTTP"] = {
            "http": True,
            "load": {kind: [url(p) for p in paths] for kind, paths in load.items()},
        }
    return found


def measure(runs_count: int, repeat: int) -> tuple[list[str], list[dict[str, object]]]:
    """(the workloads' names, each run's figures)."""
    if not CORPUS.is_dir():
        raise Skip(f"{CORPUS}: not found; the corpus is read from ../shared beside the repo")
    with tempfile.TemporaryDirectory() as work:
        site = Path(work)
        toml = sample_newsroom(site)
        # The corpus is served and read where it is, through a link: never copied.
        (site / "corpus").symlink_to(CORPUS)
        with served(site) as base:
            job = {"toml": str(toml), "repeat": repeat, "workloads": workloads(site, base)}
            (site / "job.json").write_text(json.dumps(job))
            runs = []
            for run in range(1, runs_count + 1):
                out = run_child(
                    [sys.executable, "-c", CHILD, str(site / "job.json")],
                    cwd=work, env=_child_env(), timeout=600,
                )  # fmt: skip
                figures = json.loads(out)
                runs.append(figures)
                print(
                    f"run {run}: "
                    + "; ".join(
                        f"{name} {figures[name]['collect'] * 1000:.0f} ms "
                        f"(bare {figures[name]['bare'] * 1000:.0f} ms)"
                        for name in job["workloads"]
                    )
                    + f"; peak RSS {figures['peak_mb']:.0f} MB",
                    flush=True,
                )
    return list(job["workloads"]), runs


def rows() -> list[Row]:
    """The corpus's feeds, from files and over HTTP, each beside its bare read and parse."""
    runs_count, repeat = (1, 1) if quick() else (3, 2)
    names, runs = measure(runs_count, repeat)
    table = []
    for name in names:
        if not name.startswith("corpus"):
            continue
        collect = statistics.median(r[name]["collect"] for r in runs) * 1000
        bare = statistics.median(r[name]["bare"] for r in runs) * 1000
        first = runs[0][name]
        table.append(
            Row(f"collect the corpus's {len(corpus_files())} feeds, {name.split(', ')[1]} "
                f"({first['stories']} stories, {first['failed']} broken sources; fastest of "
                f"{repeat} × {runs_count})", collect, bare, "ms", "read + feedparser",
                higher_is_better=False, goal="(none set)")
        )  # fmt: skip
    return table


def corpus_files() -> list[Path]:
    feeds, cms = corpus_sources()
    return feeds + cms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes (default 5)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timings of each workload per run (default 3)"
    )
    args = parser.parse_args()
    try:
        names, runs = measure(args.runs, args.repeat)
    except Skip as why:
        raise SystemExit(str(why)) from None
    print(f"\nmedian of {args.runs} runs, each the fastest of {args.repeat}:")
    print("| workload | stories | sources failed | collect | bare reference | collect / bare |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        collect = statistics.median(r[name]["collect"] for r in runs)
        bare = statistics.median(r[name]["bare"] for r in runs)
        first = runs[0][name]
        print(
            f"| {name} | {first['stories']} | {first['failed']} | {collect * 1000:.0f} ms "
            f"| {bare * 1000:.0f} ms | {collect / bare:.2f} |"
        )
    print(f"peak RSS (max of runs): {max(r['peak_mb'] for r in runs):.0f} MB")


if __name__ == "__main__":
    main()
