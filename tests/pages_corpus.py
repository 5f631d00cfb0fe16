"""Real article pages of the shared corpus, read by the page collector and scored against
their ground truth: for tests/test_collect_fundus.py, tests/test_collect_body.py and
bench/bench_pages.py.

../shared/corpus/articles-fundus holds 30 publishers' article pages with the fundus
maintainers' ground truth (title, authors, publishing date; its SOURCE.md). The
comparisons, fair to any collector that returns `Story`s:

- **title**: exact, once white space is folded (Le Monde's titles carry no-break spaces);
- **date**: the story's time within a minute of the ground truth's (The Japan News'
  JSON-LD says 17:41:47, its article:published_time 17:41:00);
- **authors**: the same set of names, each with case and white space folded, the
  byline split where a collector joins names (", " and " and "). Order is not compared:
  a newsroom lists its authors in an order fundus does not keep.

../shared/corpus/articles-readability holds Mozilla Readability's test pages with the
article text it expects (expected.html); a body is scored by `word_f1`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNDUS = ROOT.parent / "shared" / "corpus" / "articles-fundus"
READABILITY = ROOT.parent / "shared" / "corpus" / "articles-readability"


@dataclass
class Case:
    """One fundus page: its publisher, its saved copy, its ground truth, what was read."""

    publisher: str
    path: Path
    truth: dict[str, Any]
    story: Any = None  # digest.models.Story, or None when the page gave no story


def folded(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def names(byline: str) -> set[str]:
    """The names in a byline ("A, B and C"), case and white space folded."""
    return {folded(n).casefold() for n in re.split(r",\s+|\s+and\s+", byline) if n.strip()}


def load(folder: Path) -> list[Case]:
    """Every fundus page unzipped into `folder` (as a newsroom would save it), read by
    `read_pages` in the index's order."""
    from digest.collect.pages import read_pages

    index = json.loads((FUNDUS / "index.json").read_text(encoding="utf-8"))
    cases = []
    for entry in index:
        path = folder / f"{entry['publisher']}.html"
        path.write_bytes(gzip.decompress((FUNDUS / entry["html"]).read_bytes()))
        truth = json.loads((FUNDUS / entry["ground_truth"]).read_text(encoding="utf-8"))
        cases.append(Case(entry["publisher"], path, truth[entry["ground_truth_key"]]))
    harvest = read_pages([str(case.path) for case in cases])
    by_page = {story.source: story for story in harvest.stories}
    for case in cases:
        case.story = by_page.get(str(case.path))
    return cases


def published(case: Case) -> datetime:
    return datetime.fromisoformat(case.truth["publishing_date"]).astimezone(UTC)


def right_title(case: Case) -> bool:
    return case.story is not None and folded(case.story.title) == folded(case.truth["title"])


def right_date(case: Case) -> bool:
    return case.story is not None and abs(case.story.published_at - published(case)) < timedelta(
        minutes=1
    )


def right_authors(case: Case) -> bool:
    truth = {folded(name).casefold() for name in case.truth["authors"]}
    return case.story is not None and names(case.story.byline) == truth


def scores(cases: list[Case]) -> dict[str, int]:
    return {
        "pages": len(cases),
        "stories": sum(case.story is not None for case in cases),
        "title": sum(map(right_title, cases)),
        "date": sum(map(right_date, cases)),
        "authors": sum(map(right_authors, cases)),
    }


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.casefold()))


def word_f1(found: str, expected: str) -> float:
    """The words both texts have (case folded, counted), over the words of each, as a
    harmonic mean: 1.0 for the same words, 0.0 for none in common."""
    ours, theirs = _words(found), _words(expected)
    both = sum((ours & theirs).values())
    if not both:
        return 0.0
    precision, recall = both / sum(ours.values()), both / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)
