"""The engines considered for related stories, measured on the labelled set
../shared/corpus/related-wikiref150 (docs/related.md has the table and the choice).

Every engine ranks, for each of the 150 articles, the 149 others; the figures are:
- p@3: of the top three, the share with the article's label (topic articles);
- at the loosest threshold that still gives topic articles >= 2.5 related on average
  (each engine's scores are scaled by the article's score against itself, so one
  threshold fits every article), the precision of what passes and the related per
  noise article;
- seconds for the 150 x 149 comparisons (index built included), and the peak memory.

    .venv/bin/python bench/related_candidates.py [--engines digest,fts5,sklearn,postgres]
        [--database-url postgresql+psycopg://...]      (for postgres: ts_rank)
    .venv/bin/python bench/related_candidates.py --thread-rules
        (rules on the size of a story's thread, tried for the noise goal)

scikit-learn is not a dependency of digest: run `--engines sklearn` with a Python that
has it (`python -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn`).
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / ".." / "shared" / "corpus" / "related-wikiref150"
TOPICS = frozenset({"premier.league", "michelle.obama", "samsung.galaxy.s5"})

Article = tuple[str, str, str, str]  # label, headline, dek (first paragraph), body


def articles() -> list[Article]:
    found = []
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        found.append((re.sub(r"\.\d+$", "", path.stem), lines[0], lines[1], "\n".join(lines[1:])))
    return found


Scores = list[list[float]]  # scores[i][j]: how alike j is to i, over i's self-score


def evaluate(items: list[Article], scores: Scores) -> dict[str, float]:
    n = len(items)
    order = [sorted((j for j in range(n) if j != i), key=lambda j: -scores[i][j]) for i in range(n)]
    topic = [i for i in range(n) if items[i][0] in TOPICS]
    noise = [i for i in range(n) if items[i][0] not in TOPICS]
    right = sum(items[j][0] == items[i][0] for i in topic for j in order[i][:3])
    result = {"p@3": right / (3 * len(topic))}
    candidates = sorted({round(scores[i][j], 4) for i in topic for j in order[i][:3]}, reverse=True)
    for threshold in candidates:  # from the strictest down: the first that gives 2.5
        shown = {i: [j for j in order[i][:3] if scores[i][j] >= threshold] for i in range(n)}
        mean = sum(len(shown[i]) for i in topic) / len(topic)
        if mean >= 2.5:
            passed = [j for i in topic for j in shown[i]]
            result |= {
                "threshold": threshold,
                "precision": sum(items[j][0] == items[i][0] for i in topic for j in shown[i])
                / max(len(passed), 1),
                "topic": mean,
                "noise": sum(len(shown[i]) for i in noise) / len(noise),
            }
            break
    return result


def digest_engine(items: list[Article], with_body: bool) -> Scores:
    """digest.related over a SQLite store, as the product runs it."""
    import tempfile
    from datetime import UTC, datetime, timedelta

    sys.path.insert(0, str(HERE.parent))
    from digest import related
    from digest.models import Story
    from digest.store import Store

    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{folder}/c.db")
        base = datetime(2025, 11, 1, tzinfo=UTC)
        stories = [
            Story(
                url=f"https://x.example/{i}",
                title=h,
                dek=d,
                body=b if with_body else "",
                published_at=base - timedelta(hours=i),
            )
            for i, (_, h, d, b) in enumerate(items)
        ]
        store.stories.upsert_stories(stories)
        start, end = base - timedelta(days=30), base + timedelta(hours=1)
        related.refresh(store, start, end)
        stored = store.stories.stories_by_url(s.url for s in stories)
        ids = [stored[s.url].id for s in stories]
        position = {story_id: i for i, story_id in enumerate(ids)}
        out = []
        for s in stories:
            row = [0.0] * len(items)
            for story_id, score in related.scores(store, stored[s.url], start, end, 200).items():
                row[position[story_id]] = score
            out.append(row)
        store.close()
        return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]{3,}", text.lower())


def fts5_engine(items: list[Article], with_body: bool) -> Scores:
    """SQLite FTS5, bm25 (headline weighted 2): each article's distinct words OR-ed."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE a USING fts5(title, dek, body, tokenize='porter')")
    db.executemany(
        "INSERT INTO a(rowid, title, dek, body) VALUES (?, ?, ?, ?)",
        [(i + 1, h, d, b if with_body else "") for i, (_, h, d, b) in enumerate(items)],
    )
    out = []
    for i, (_, h, d, b) in enumerate(items):
        words = list(dict.fromkeys(_words(" ".join([h, d, b if with_body else ""]))))[:300]
        query = " OR ".join(f'"{w}"' for w in words)
        rows = db.execute(
            "SELECT rowid, -bm25(a, 2.0, 1.0, 1.0) FROM a WHERE a MATCH ?", (query,)
        ).fetchall()
        got = dict(rows)
        whole = got.get(i + 1) or 1.0
        out.append([got.get(j + 1, 0.0) / whole if j != i else 0.0 for j in range(len(items))])
    return out


def postgres_engine(items: list[Article], with_body: bool, url: str) -> Scores:
    """PostgreSQL tsvector (english, headline weight A) and ts_rank, words OR-ed."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TEMP TABLE a (id int, v tsvector)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO a SELECT %s, setweight(to_tsvector('english', %s), 'A') || "
                "to_tsvector('english', %s)",
                [
                    (i, h, d + "\n" + (b if with_body else ""))
                    for i, (_, h, d, b) in enumerate(items)
                ],
            )
        out = []
        for i, (_, h, d, b) in enumerate(items):
            words = list(dict.fromkeys(_words(" ".join([h, d, b if with_body else ""]))))[:300]
            rows = conn.execute(
                "SELECT id, ts_rank(v, to_tsquery('english', %s)) FROM a",
                (" | ".join(words),),
            ).fetchall()
            got = dict(rows)
            whole = got.get(i) or 1.0
            out.append([got.get(j, 0.0) / whole if j != i else 0.0 for j in range(len(items))])
        return out


def sklearn_engine(items: list[Article], with_body: bool) -> Scores:
    """scikit-learn TfidfVectorizer (English stop words, words and pairs, sublinear tf;
    the headline twice) and cosine similarity."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    texts = [" ".join([h, h, d, b if with_body else ""]) for _, h, d, b in items]
    vectors = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True)
    matrix = cosine_similarity(vectors.fit_transform(texts))
    return [
        [0.0 if i == j else float(matrix[i][j]) for j in range(len(items))]
        for i in range(len(items))
    ]


def thread_rule(
    items: list[Article], scores: Scores, rule: tuple[float, float, int]
) -> tuple[float, float, float]:
    """(related per topic article, per noise article, precision) when a story's related
    (its top three at least `threshold` alike) are shown only if at least `k` stories
    are `thread` alike to it: a rule on the size of the story's thread."""
    threshold, thread, k = rule
    n = len(items)
    topic_counts, noise_counts, right = [], [], 0
    for i in range(n):
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: -scores[i][j])
        shown = [j for j in ranked[:3] if scores[i][j] >= threshold]
        if sum(scores[i][j] >= thread for j in ranked) < k:
            shown = []
        if items[i][0] in TOPICS:
            topic_counts.append(len(shown))
            right += sum(items[j][0] == items[i][0] for j in shown)
        else:
            noise_counts.append(len(shown))
    shown_topic = sum(topic_counts)
    return (shown_topic / len(topic_counts), sum(noise_counts) / len(noise_counts),
            right / max(shown_topic, 1))  # fmt: skip


def search_thread_rules(
    items: list[Article], engine: Callable[[list[Article], bool], Scores]
) -> None:
    """Every rule of a grid (threshold x thread threshold x thread size): which meet all
    of issue 10's goals with body text and from headline and dek at once."""
    body, short = engine(items, True), engine(items, False)
    grid = [
        (t / 1000, thread / 1000, k)
        for t in range(30, 90, 5)
        for thread in range(20, 90, 5)
        for k in range(1, 30)
    ]
    meeting = []
    for rule in grid:
        b, h = thread_rule(items, body, rule), thread_rule(items, short, rule)
        if (
            b[0] >= 2.5
            and h[0] >= 2.5
            and b[1] <= 0.5
            and h[1] <= 0.5
            and b[2] >= 0.99
            and h[2] >= 0.95
        ):
            meeting.append(rule)
    print(
        f"{len(grid)} thread rules tried; meeting every goal with body and from "
        f"headline+dek: {meeting or 'none'}"
    )
    for rule in [(0.05, 0.05, 1), (0.05, 0.05, 13), (0.05, 0.05, 6), (0.08, 0.08, 4)]:
        b, h = thread_rule(items, body, rule), thread_rule(items, short, rule)
        print(f"  threshold {rule[0]}, thread {rule[1]}, size >= {rule[2]}: body topic "
              f"{b[0]:.2f} noise {b[1]:.2f} precision {b[2]:.3f}; headline+dek topic "
              f"{h[0]:.2f} noise {h[1]:.2f} precision {h[2]:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="digest,fts5")
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--thread-rules", action="store_true",
        help="search rules on the size of a story's thread for the noise goal (digest's scores)",
    )  # fmt: skip
    args = parser.parse_args()
    items = articles()
    if args.thread_rules:
        search_thread_rules(items, digest_engine)
        return
    engines: dict[str, Callable[[list[Article], bool], Scores]] = {
        "digest": digest_engine,
        "fts5": fts5_engine,
        "sklearn": sklearn_engine,
        "postgres": lambda items, body: postgres_engine(items, body, args.database_url),
    }
    for name in args.engines.split(","):
        for with_body in (True, False):
            started = time.perf_counter()
            scores = engines[name](items, with_body)
            seconds = time.perf_counter() - started
            got = evaluate(items, scores)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            figures = "  ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()
            )
            kind = "body" if with_body else "headline+dek"
            print(f"{name:9s} {kind:13s} {figures}  {seconds:.1f} s  peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
