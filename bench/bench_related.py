"""Benchmark: related stories (digest/related.py) over an archive of 50,000 stories.

The archive is made at run time, never committed: each story is a headline, a dek and
a body of sentences drawn from the articles of ../shared/corpus/related-wikiref150,
mostly from articles of one label, so that stories have topics as real ones do.
Published over the 30 days before the edition's send time. Into SQLite (a file in a
temporary folder), or the PostgreSQL of --database-url.

Prints, each beside a bare reference measured in the same run:
- indexing: stories per second (digest.related.index), beside inserting the stories;
- one story's related stories (related_to, 30 days, warm): median and 95th percentile
  over --queries stories, beside one SELECT of the archive's ids and titles;
- an edition's related (for_edition: the lead, and with under_more the lead and eight
  "More" stories), beside the same SELECT;

    .venv/bin/python bench/bench_related.py [--stories 50000] [--queries 50]
                                           [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from measure import ROOT, Row, quick

sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from digest import related
from digest.models import Edition, Overrides, Pick, Story
from digest.related_settings import RelatedSettings
from digest.store import Store, stories

CORPUS = ROOT / ".." / "shared" / "corpus" / "related-wikiref150"
SEND_AT = datetime(2025, 12, 5, 15, 0, tzinfo=UTC)


def corpus_sentences() -> dict[str, list[str]]:
    """Sentences of the labelled set's articles, by label."""
    by_label: dict[str, list[str]] = {}
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        label = re.sub(r"\.\d+$", "", path.stem)
        sentences = [
            s.strip()
            for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split("\n")))
            if 40 <= len(s.strip()) <= 300
        ]
        by_label.setdefault(label, []).extend(sentences)
    return by_label


def archive(count: int, seed: int = 5) -> list[Story]:
    """`count` stories recombined from the corpus's sentences (see the module)."""
    rng = random.Random(seed)
    by_label = corpus_sentences()
    labels = sorted(by_label)
    made = []
    for i in range(count):
        label = rng.choice(labels)
        own = by_label[label]
        other = by_label[rng.choice(labels)]
        body = [rng.choice(own) for _ in range(rng.randint(4, 9))] + [rng.choice(other)]
        made.append(
            Story(
                url=f"https://news.example.org/archive/{i}",
                title=rng.choice(own)[:120],
                dek=rng.choice(own),
                body=" ".join(body),
                published_at=SEND_AT - timedelta(seconds=rng.randrange(30 * 86400)),
                section=label,
            )
        )
    return made


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@dataclass
class Figures:
    stories: int
    index_s: float
    insert_s: float
    one_median_ms: float
    one_p95_ms: float
    related_each: float
    edition_ms: float
    edition_more_ms: float
    bare_ms: float


def measure(count: int, queries: int, database_url: str = "") -> Figures:
    """Make and index an archive of `count` stories, then time `queries` stories'
    related and an edition's; prints each figure as it goes."""
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        store = Store.open(url)
        made = archive(count)
        insert = timed(lambda: store.stories.upsert_stories(made))
        start, end = SEND_AT - timedelta(days=30), SEND_AT
        index = timed(lambda: related.refresh(store, start, end))
        print(
            f"{count:,} stories ({store.dialect}): indexed in {index:.1f} s "
            f"({count / index:,.0f} stories/s); reference: inserting them {insert:.1f} s",
            flush=True,
        )
        assert not store.related.stale_story_ids(start, end), "every story indexed"
        with store.begin() as conn:
            all_ids = list(conn.scalars(select(stories.c.id).order_by(stories.c.id)))
        rng = random.Random(7)
        sample = store.stories.stories_by_id(rng.sample(all_ids, queries))
        settings = RelatedSettings()
        one: list[float] = []
        shown = 0
        for story in sample.values():
            found: list[related.Related] = []

            def ask(story: Story = story, found: list[related.Related] = found) -> None:
                found.extend(
                    related.related_to(
                        store, story, start, end, limit=settings.count, threshold=settings.threshold
                    )
                )

            one.append(timed(ask))
            shown += len(found)

        def select_archive() -> None:
            with store.begin() as conn:
                conn.execute(
                    select(stories.c.id, stories.c.title).where(
                        stories.c.published_at >= start, stories.c.published_at < end
                    )
                ).all()

        bare = statistics.median(timed(select_archive) for _ in range(5))
        one.sort()
        median, p95 = statistics.median(one), one[max(int(len(one) * 0.95) - 1, 0)]
        print(
            f"one story's related, 30 days: median {median * 1000:.1f} ms, "
            f"p95 {p95 * 1000:.1f} ms ({shown / len(one):.1f} related each); "
            f"reference: one SELECT of the archive {bare * 1000:.1f} ms",
            flush=True,
        )
        day = list(sample.values())[:9]
        picks = [
            Pick(story=s, slot="more", position=i, score=0.0) for i, s in enumerate(day[1:], 1)
        ]
        edition = Edition(
            name="2025-12-05",
            send_at=SEND_AT,
            window_start=SEND_AT - timedelta(hours=24),
            window_end=SEND_AT,
            subject="",
            preheader="",
            lead=Pick(story=day[0], slot="lead", position=0, score=1.0),
            more=picks,
        )
        editions: list[float] = []
        for under_more in (False, True):
            wanted = replace(settings, under_more=under_more)
            seconds = statistics.median(
                timed(lambda w=wanted: related.for_edition(store, edition, w, Overrides()))
                for _ in range(3)
            )
            editions.append(seconds)
            where = "the lead and 8 More stories" if under_more else "the lead"
            print(
                f"an edition's related (under {where}): {seconds * 1000:.0f} ms; "
                f"reference: one SELECT of the archive {bare * 1000:.1f} ms",
                flush=True,
            )
        store.close()
    return Figures(
        count, index, insert, median * 1000, p95 * 1000, shown / len(one),
        editions[0] * 1000, editions[1] * 1000, bare * 1000,
    )  # fmt: skip


def rows(count: int = 50_000, queries: int = 50) -> list[Row]:
    """make bench's lines: one story's related and an edition's, beside one SELECT of
    the archive; indexing beside inserting the stories."""
    if quick():
        count, queries = 1_000, 5
    got = measure(count, queries)
    size = f"{count:,}"
    return [
        Row(f"related: index {size} stories", got.stories / got.index_s,
            got.stories / got.insert_s, "stories/s", "inserting them"),
        Row(f"related: one story's, from {size} (median of {queries})", got.one_median_ms,
            got.bare_ms, "ms", "one SELECT of the archive", higher_is_better=False,
            goal="< 50 ms"),
        Row("related: an edition's (lead + 8 More, under_more)", got.edition_more_ms,
            got.bare_ms, "ms", "one SELECT of the archive", higher_is_better=False,
            goal="< 1000 ms"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    measure(args.stories, args.queries, args.database_url)


if __name__ == "__main__":
    main()
