"""The page collector on real pages: how many titles, dates, authors and bodies are right.

    .venv/bin/python bench/bench_pages.py                       # this checkout
    git worktree add /tmp/base-pages c664346                    # the code to compare with
    .venv/bin/python bench/bench_pages.py --before /tmp/base-pages

On the shared corpus (../shared/corpus): the 30 fundus pages against their ground
truth, scored as tests/pages_corpus.py says (exact title; time within a minute; the same set
of author names), and Mozilla Readability's pages: titles and times against its
expected metadata, and the body text against its expected article (word F1: the words
both have, over the words of each, as a harmonic mean; case folded). Each checkout is
read in its own process (PYTHONPATH), its figures written to a file, then printed side
by side; the seconds are the reading's, beside a bare parse of the same pages by lxml.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measure() -> dict[str, Any]:
    """This process's digest on both corpora (run with PYTHONPATH set to a checkout)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from lxml import html as lxml_html
    from pages_corpus import READABILITY, load, scores, word_f1

    from digest.collect.pages import read_pages

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        cases = load(Path(folder))
    fundus_seconds = time.perf_counter() - started
    figures: dict[str, Any] = {"fundus": scores(cases), "fundus_seconds": fundus_seconds}

    pages = sorted(p for p in READABILITY.iterdir() if (p / "source.html").exists())
    started = time.perf_counter()
    harvest = read_pages([str(p / "source.html") for p in pages])
    figures["readability_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    for page in pages:
        lxml_html.fromstring((page / "source.html").read_bytes())
    figures["bare_parse_seconds"] = time.perf_counter() - started
    figures["body_seconds"] = _body_seconds(pages)
    by_page = {s.source: s for s in harvest.stories}
    titles = dated = right_times = 0
    f1s = []
    for page in pages:
        expected = json.loads((page / "expected-metadata.json").read_text(encoding="utf-8"))
        story = by_page.get(str(page / "source.html"))
        if story is None:
            continue
        titles += " ".join(story.title.split()) == " ".join(expected["title"].split())
        if expected.get("publishedTime"):
            dated += 1
            when = datetime.fromisoformat(expected["publishedTime"].replace("Z", "+00:00"))
            right_times += story.published_at == when.replace(tzinfo=when.tzinfo or UTC)
        article = lxml_html.fromstring((page / "expected.html").read_bytes()).text_content()
        f1s.append(word_f1(getattr(story, "body", ""), article))
    f1s.sort()
    figures["readability"] = {
        "pages": len(pages),
        "stories": len(harvest.stories),
        "title": titles,
        "dated": dated,
        "date": right_times,
        "body_f1_mean": sum(f1s) / len(f1s) if f1s else 0.0,
        "body_f1_median": f1s[len(f1s) // 2] if f1s else 0.0,
        "body_f1_over_0.8": sum(f >= 0.8 for f in f1s),
    }
    return figures


def _body_seconds(pages: list[Path]) -> float:
    """The part of the reading that is the body (trafilatura's main text), if any."""
    try:
        from digest.collect.bodytext import page_body
    except ImportError:
        return 0.0  # a checkout that keeps no body
    from trafilatura import load_html

    trees = [load_html((page / "source.html").read_bytes()) for page in pages]
    started = time.perf_counter()
    for tree in trees:
        page_body(tree)
    return time.perf_counter() - started


def _measured_at(checkout: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "out.json", Path(folder) / "err.txt"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        with err.open("w") as errors:
            # Output to files, never a pipe (bench/measure.py says why).
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(out)],
                    env=env,
                    stdout=errors,
                    stderr=errors,
                    cwd=checkout,
                    check=False,
                    timeout=600,
                )
            except subprocess.TimeoutExpired:
                sys.exit(f"error: measuring {checkout} took over 600 s: killed")
        if done.returncode != 0:
            sys.exit(f"error: measuring {checkout} failed:\n{err.read_text()[-2000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def rows() -> list[Any]:
    """The reading of Readability's pages beside a bare lxml parse of them; the scores
    in the stage's name. The same with --quick: the corpus is what it is."""
    sys.path.insert(0, str(HERE))
    from measure import Row, Skip

    if not (ROOT.parent / "shared" / "corpus").is_dir():
        raise Skip(f"{ROOT.parent / 'shared' / 'corpus'} is missing (the shared corpus)")
    got = _measured_at(ROOT)
    read, fundus = got["readability"], got["fundus"]
    print(
        f"readability: {read['stories']}/{read['pages']} pages read in "
        f"{got['readability_seconds']:.2f} s (bare lxml {got['bare_parse_seconds']:.2f} s); "
        f"titles {read['title']}, dates {read['date']}/{read['dated']}, body F1 ≥ 0.8 "
        f"{read['body_f1_over_0.8']}; fundus: titles {fundus['title']}/{fundus['pages']}",
        flush=True,
    )
    return [
        Row(f"read {read['pages']} pages of Readability's tests (titles {read['title']}/"
            f"{read['stories']}, body F1 ≥ 0.8 {read['body_f1_over_0.8']}/{read['stories']}; "
            f"fundus titles {fundus['title']}/{fundus['pages']})",
            got["readability_seconds"] * 1000, got["bare_parse_seconds"] * 1000, "ms",
            "lxml parse alone", higher_is_better=False, goal="(none set)"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark its options
    if args.child:
        args.child.write_text(json.dumps(measure()), encoding="utf-8")
        return
    corpus = ROOT.parent / "shared" / "corpus"
    if not corpus.is_dir():
        sys.exit(f"error: {corpus} is missing (the shared corpus)")
    columns = {"this checkout": _measured_at(ROOT)}
    if args.before:
        columns = {f"before ({args.before})": _measured_at(args.before), **columns}
    rows = [
        ("fundus: exact title", "fundus", "title", "pages"),
        ("fundus: date within a minute", "fundus", "date", "pages"),
        ("fundus: same authors", "fundus", "authors", "pages"),
        ("readability: exact title", "readability", "title", "stories"),
        ("readability: exact date", "readability", "date", "dated"),
        ("readability: body word F1 ≥ 0.8", "readability", "body_f1_over_0.8", "stories"),
    ]
    print(f"{'':34}" + "".join(f"{name:>34}" for name in columns))
    for label, corpus, key, out_of in rows:
        cells = [f"{c[corpus][key]}/{c[corpus][out_of]}" for c in columns.values()]
        print(f"{label:34}" + "".join(f"{cell:>34}" for cell in cells))
    for key in ("body_f1_mean", "body_f1_median"):
        cells = [f"{c['readability'][key]:.3f}" for c in columns.values()]
        print(f"{'readability: ' + key:34}" + "".join(f"{cell:>34}" for cell in cells))
    for key in ("fundus_seconds", "readability_seconds", "body_seconds", "bare_parse_seconds"):
        cells = [f"{c[key]:.2f} s" for c in columns.values()]
        print(f"{key:34}" + "".join(f"{cell:>34}" for cell in cells))


if __name__ == "__main__":
    main()
