"""Caps on what a collected story or page-view row may store, the same for every source.

A feed, a CMS or a page writes what it likes, and a 50 MB "description" stored whole
once broke the next morning's draft. So, where collect_all saves (`[limits]` in
digest.toml, `config.Limits`):

- title, dek, byline and the picture's caption are cut to `title_max_chars`,
  `dek_max_chars`, `byline_max_chars` and `caption_max_chars`; the picture's credit
  to `byline_max_chars` (a credit is a name, as a byline is), the section to the width
  of its column, the body text to `body_max_chars`. A cut falls between words where
  there is a word boundary in the last half, and ends in "…", within the cap.
- a story whose URL is longer than `url_max_chars`, or than the store's URL column
  (2,000), is skipped with one line: a cut URL is a broken link.
- a picture whose URL is longer than `url_max_chars` is dropped, with its caption and
  credit, and the story kept, with one line.
- a page-view row whose URL is longer is left out; one line per source says how many.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from digest.config import Limits
from digest.models import PageViews, Story
from digest.store import page_views, stories

log = logging.getLogger("digest.collect")

ELLIPSIS = "…"
# The store's VARCHAR widths (digest/store/tables.py): PostgreSQL refuses a longer value, and
# with it the whole batch of stories it came in.
_URL_COLUMN = min(stories.c.url.type.length or 2000, page_views.c.url.type.length or 2000)
_SECTION_COLUMN = stories.c.section.type.length or 200
_TRAILING = " ,;:-–—"


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and "…", within `limit`."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return text[:limit]
    room = limit - len(ELLIPSIS)
    head = text[: room + 1]  # one more: a space just after the cut means it is between words
    boundary = head.rfind(" ")
    # A first "word" of half the cap (a URL, a run of one letter) is cut where it is.
    kept = head[:boundary] if boundary > room // 2 else head[:room]
    return kept.rstrip(_TRAILING) + ELLIPSIS


def url_cap(limits: Limits) -> tuple[int, str]:
    """The longest story or page-view URL the store keeps, and what sets it."""
    if limits.url_max_chars <= _URL_COLUMN:
        return limits.url_max_chars, "[limits] url_max_chars"
    return _URL_COLUMN, "the store's URL column; [limits] url_max_chars cannot raise it"


def capped_stories(found: Iterable[Story], limits: Limits) -> list[Story]:
    """Every story within the caps; one over the URL cap is left out with one line."""
    longest_url, set_by = url_cap(limits)
    kept: list[Story] = []
    for story in found:
        where = f"{story.source}: story {cut(story.title, 60)!r}"
        if len(story.url) > longest_url:
            log.warning(
                "%s: its URL is over %s characters (%s); skipped (a cut URL is a broken link)",
                where,
                f"{longest_url:,}",
                set_by,
            )
            continue
        picture = (story.image_url, story.image_caption, story.image_credit)
        if len(story.image_url) > limits.url_max_chars:
            log.warning(
                "%s: its picture's URL is over %s characters ([limits] url_max_chars); "
                "kept without the picture",
                where,
                f"{limits.url_max_chars:,}",
            )
            picture = ("", "", "")
        kept.append(
            replace(
                story,
                title=cut(story.title, limits.title_max_chars),
                dek=cut(story.dek, limits.dek_max_chars),
                byline=cut(story.byline, limits.byline_max_chars),
                section=cut(story.section, _SECTION_COLUMN),
                image_url=picture[0],
                image_caption=cut(picture[1], limits.caption_max_chars),
                image_credit=cut(picture[2], limits.byline_max_chars),
                body=cut(story.body, limits.body_max_chars),
            )
        )
    return kept


def capped_views(rows: Iterable[PageViews], limits: Limits) -> list[PageViews]:
    """The rows whose URL fits; one line per source says how many were left out."""
    longest_url, set_by = url_cap(limits)
    kept: list[PageViews] = []
    too_long: Counter[str] = Counter()
    for row in rows:
        if len(row.url) > longest_url:
            too_long[row.source] += 1
        else:
            kept.append(row)
    for source, count in too_long.items():
        log.warning(
            "%s: %d rows with a URL over %s characters (%s); skipped",
            source,
            count,
            f"{longest_url:,}",
            set_by,
        )
    return kept
