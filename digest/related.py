"""Related stories: for a story, the most alike stories of the day and the archive.

How alike two stories are is a TF-IDF measure over an index kept in the store
(store.related), chosen on a labelled set of real articles (docs/related.md has the
comparison with SQLite FTS5/bm25, PostgreSQL ts_rank and scikit-learn):

- A story's terms are its words, lower-cased, accents folded, common words left out,
  cut to a rough stem ("talks", "talked" → "talk"), and every pair of neighbouring
  words ("harbour ferry"). The headline counts twice, the dek and body once each
  (FIELD_WEIGHTS); a term's weight is 1 + ln(count), and the story keeps its
  TERMS_PER_STORY heaviest terms, as a unit vector w. Its POSTED_TERMS heaviest
  are posted (what a story is found by); the whole vector is what it is scored on.
- idf(t) = ln((1 + n) / (1 + df(t))) + 1, with n the indexed stories of the window
  and df(t) those that posted the term: computed when asked, so it is the archive's
  own and the same whatever order the stories came in.
- score(q, d) = Σ idf(t)² w_q(t) w_d(t) / Σ idf(t)² w_q(t)²: the share of the
  story's own weight that the other story shares (1 = the same terms, 0 = none).
- Terms that more than 2% of the window's stories have (COMMON_SHARE) are not looked
  up: they would cost the most postings to read and add the least to a score.
- The database draws up a shortlist of the SHORTLIST most alike through the
  story's SHORTLIST_TERMS rarest terms that other stories have (short postings);
  those are then scored here on their whole vectors.
- A story is related when its score is at least `[related] threshold`; at most
  `[related] count` are shown, the highest first; equal scores (rounded to 6
  places) go by URL. The same stories in give the same related out, on SQLite and
  PostgreSQL alike: the sums are made here, in one order, not by the database.

In an edition (for_edition): a "Related" list under the lead (and, with
`under_more`, under each "More" story), from the stories published in the
`days` before the send time; a story already in the edition (lead, More, or an
earlier related list) is not shown again. Most Read may repeat any of them.
Editors add or drop related stories under the lead (models.Overrides).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.errors import NotFoundError
from digest.models import Edition, Overrides, Pick, Story
from digest.related_settings import RelatedSettings
from digest.store import Store

FIELD_WEIGHTS: tuple[tuple[str, float], ...] = (("title", 2.0), ("dek", 1.0), ("body", 1.0))
TERMS_PER_STORY = 160
#: Of those, the heaviest are posted (story_terms): a story is shortlisted through
#: them, then scored on its whole vector. Fewer postings are what keeps one story's
#: related fast in a large archive (docs/related.md, "Speed").
POSTED_TERMS = 60
#: The store keeps terms in VARCHAR(80), a pair of words included; longer "words" are
#: noise anyway (URLs, hashes).
MAX_TERM_CHARS = 39
#: A term more than this share of the window's stories have (and more than
#: COMMON_FLOOR of them) is too common to find related stories by: its postings are
#: not read. Its weight still counts in the story's own (the score's denominator), so
#: it only ever lowers a score. On the labelled set (150 stories) no term is skipped;
#: in a 50,000-story archive this is what keeps one story's related under 50 ms.
COMMON_SHARE = 0.02
COMMON_FLOOR = 200
#: How many of the most alike stories the database shortlists for the exact score.
SHORTLIST = 40
#: ... drawn up through this many of the story's terms, those that weigh most in a score.
SHORTLIST_TERMS = 32
#: Scores are compared rounded, so a last-digit difference in floating point between
#: two machines never changes an order.
DIGITS = 6

_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)*", re.UNICODE)
#: Words too common to say what a story is about (English and Spanish, the languages
#: the templates speak). idf weighs down the rest of the common words.
_STOPWORDS = """a about after again against all also an and any are as at be been before being
    between both but by can could did do does during each for from further had has have
    he her here hers him his how i if in into is it its just may me might more most mr
    mrs ms much must my no nor not now of off on once one only or other our out over own
    said same says she should so some such than that the their them then there these
    they this those through to too two under until up very was we were what when where
    which while who whom why will with would year years you your new de la el en y los
    las del al un una por con para es se lo su sus que como mas pero sobre"""
STOPWORDS = frozenset(_STOPWORDS.split())
_SUFFIXES = (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", ""))


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """A rough English stem: enough that "talks", "talked", "talking" meet. A word is
    left at least three letters long, and "ss" is not a plural ("press")."""
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: -len(suffix)] + replacement
    return word


def _words(text: str) -> list[str]:
    folded = text.lower()
    if not folded.isascii():  # "Café" and "cafe" are one word; most text needs no folding
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    return [
        _stem(w)
        for w in _WORD.findall(folded)
        if w not in STOPWORDS and 1 < len(w) <= MAX_TERM_CHARS and not w.isdigit()
    ]


def terms(story: Story) -> dict[str, float]:
    """The story's weighted terms, a unit vector of at most TERMS_PER_STORY terms."""
    counts: Counter[str] = Counter()
    for name, weight in FIELD_WEIGHTS:
        words = _words(getattr(story, name))
        for word in words:
            counts[word] += weight
        for first, second in itertools.pairwise(words):
            counts[f"{first} {second}"] += weight
    weighted = sorted(
        ((t, 1 + math.log(c)) for t, c in counts.items()), key=lambda kv: (-kv[1], kv[0])
    )
    kept = weighted[:TERMS_PER_STORY]
    norm = math.sqrt(sum(w * w for _, w in kept)) or 1.0
    return {t: round(w / norm, 8) for t, w in kept}


def posted(vector: dict[str, float]) -> list[str]:
    """The terms a story is found by: its POSTED_TERMS heaviest (its own weights, so
    the choice does not depend on what else is in the archive)."""
    return sorted(vector, key=lambda t: (-vector[t], t))[:POSTED_TERMS]


def index(store: Store, stories: Iterable[Story]) -> int:
    """Keep the terms of these stored stories (with ids), replacing any earlier ones."""
    entries = []
    for story in stories:
        if story.id is not None:
            vector = terms(story)
            entries.append((story.id, story.published_at, vector, posted(vector)))
    return store.related.save_terms(entries)


def refresh(store: Store, start: datetime, end: datetime) -> int:
    """Index the stories of [start, end) that have no terms yet or changed since."""
    stale = store.related.stale_story_ids(start, end)
    done = 0
    for i in range(0, len(stale), 500):
        done += index(store, store.stories.stories_by_id(stale[i : i + 500]).values())
    return done


@dataclass(frozen=True)
class Related:
    """A story related to another, and how alike they are (0..1, see the module)."""

    story: Story
    score: float


def scores(
    store: Store, story: Story, start: datetime, end: datetime, shortlist: int
) -> dict[int, float]:
    """How alike the `shortlist` indexed stories of [start, end) most alike `story` are
    to it (by id; the story itself left out). The database draws up the shortlist
    (store.related.best_matches); the scores are summed here, in one order."""
    mine = store.related.terms_of(story.id) if story.id is not None else None
    # The story's own postings count in the window's df when it is indexed in it.
    own = set(posted(mine)) if mine and start <= story.published_at < end else set()
    if mine is None:
        mine = terms(story)
    if not mine:
        return {}
    n = store.related.count_indexed(start, end)
    df = store.related.document_frequencies(mine, start, end)
    idf2 = {t: (math.log((1 + n) / (1 + df.get(t, 0))) + 1) ** 2 for t in mine}
    common = max(COMMON_FLOOR, COMMON_SHARE * n)
    asked = {t: mine[t] * idf2[t] for t in mine if 0 < df.get(t, 0) <= common}
    through = _shortlist_terms(asked, {t: df[t] - (t in own) for t in asked})
    candidates = store.related.best_matches(through, start, end, shortlist + 1)
    vectors = store.related.vectors(i for i in candidates if i != story.id)
    whole = sum(idf2[t] * w * w for t, w in sorted(mine.items()))
    order = sorted(asked)  # one order of summing everywhere
    found: dict[int, float] = {}
    for story_id, theirs in vectors.items():
        total = sum(asked[t] * theirs[t] for t in order if t in theirs)
        found[story_id] = round(total / whole, DIGITS)
    return found


def _shortlist_terms(asked: dict[str, float], others: dict[str, int]) -> dict[str, float]:
    """The terms the shortlist is drawn through: the SHORTLIST_TERMS that weigh most in
    a score (the rarest) of those some other story has. A term only the story itself
    has would find nothing; the rarest others have are short postings to read."""
    findable = sorted((t for t in asked if others[t] > 0), key=lambda t: (-asked[t], t))
    return {t: asked[t] for t in findable[:SHORTLIST_TERMS]}


def related_to(
    store: Store,
    story: Story,
    start: datetime,
    end: datetime,
    *,
    limit: int,
    threshold: float,
    exclude: Iterable[int] = (),
) -> list[Related]:
    """At most `limit` stories of [start, end) at least `threshold` alike, most alike
    first (equal scores by URL), none of `exclude` (story ids)."""
    if limit <= 0:
        return []
    left_out = set(exclude)
    found = scores(store, story, start, end, SHORTLIST + len(left_out))
    passing = sorted(
        ((score, story_id) for story_id, score in found.items()
         if score >= threshold and story_id not in left_out),
        reverse=True,
    )  # fmt: skip
    if not passing:
        return []
    # Every story that ties with the last one shown, so the URL settles the tie.
    cut = passing[min(limit, len(passing)) - 1][0]
    chosen = [(score, story_id) for score, story_id in passing if score >= cut]
    by_id = store.stories.stories_by_id(story_id for _, story_id in chosen)
    ranked = sorted(
        (Related(by_id[i], score) for score, i in chosen if i in by_id),
        key=lambda r: (-r.score, r.story.url),
    )
    return ranked[:limit]


class StoryNotFound(NotFoundError):
    """A URL that is no story in the store: a usage error (exit status 2)."""

    exit_code = 2


def for_story(
    store: Store, url: str, settings: RelatedSettings, limit: int | None = None
) -> tuple[Story, list[Related]]:
    """Any stored story's related stories, from the `days` before and after it (an
    editor looking back at a story sees its follow-ups too)."""
    story = store.stories.stories_by_url([url]).get(url)
    if story is None:
        raise StoryNotFound(
            f"{url[:200]}: no such story in the store; check the URL (as `digest draft "
            "--json` prints it) or collect the source first"
        )
    start = story.published_at - timedelta(days=settings.days)
    end = story.published_at + timedelta(days=settings.days)
    refresh(store, start, end)
    found = related_to(
        store,
        story,
        start,
        end,
        limit=settings.count if limit is None else limit,
        threshold=settings.threshold,
    )
    return story, found


@dataclass
class _Shown:
    """Stories already in the edition: a related list never shows one again."""

    ids: set[int] = field(default_factory=set)

    def add(self, stories: Iterable[Story]) -> None:
        self.ids.update(s.id for s in stories if s.id is not None)


def archive_window(edition: Edition, settings: RelatedSettings) -> tuple[datetime, datetime]:
    """Where an edition's related stories come from: the `days` before its send time."""
    return edition.window_end - timedelta(days=settings.days), edition.window_end


def for_edition(
    store: Store, edition: Edition, settings: RelatedSettings, overrides: Overrides
) -> list[Pick]:
    """The related picks of an edition: under the lead (editors' additions first), and
    under each "More" story with `under_more`; see the module for the rules."""
    if edition.lead is None or settings.count <= 0:
        return []
    start, end = archive_window(edition, settings)
    refresh(store, start, end)
    shown = _Shown()
    shown.add(p.story for p in [edition.lead, *edition.more])
    dropped = store.stories.stories_by_url(overrides.related_dropped)
    dropped_ids = {s.id for s in dropped.values() if s.id is not None}
    added = store.stories.stories_by_url(overrides.related_added)
    hosts: Sequence[Pick] = [edition.lead, *(edition.more if settings.under_more else [])]
    picks: list[Pick] = []
    for host in hosts:
        mine: list[Pick] = []
        if host is edition.lead:
            for url in overrides.related_added:
                story = added.get(url)
                if story is None or story.id in shown.ids or len(mine) >= settings.count:
                    continue
                mine.append(_pick(story, 0.0, host, "added by an editor"))
                shown.add([story])
        for found in related_to(
            store,
            host.story,
            start,
            end,
            limit=settings.count - len(mine),
            threshold=settings.threshold,
            exclude=shown.ids | dropped_ids,
        ):
            mine.append(_pick(found.story, found.score, host))
            shown.add([found.story])
        picks.extend(mine)
    return [_numbered(p, i) for i, p in enumerate(picks, start=1)]


def _pick(story: Story, score: float, host: Pick, note: str = "") -> Pick:
    return Pick(
        story=story,
        slot="related",
        position=0,
        score=score,
        breakdown={"similarity": score},
        note=note,
        under=host.story.url,
    )


def _numbered(pick: Pick, position: int) -> Pick:
    pick.position = position
    return pick
