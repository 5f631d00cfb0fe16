"""RSS and Atom feeds, read with feedparser from a file or an http(s) URL."""

from __future__ import annotations

import calendar
import html
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.collect.fetch import Fetcher, fetch
from digest.collect.urls import canonical_url, is_safe_link, safe_image_url
from digest.errors import InputError
from digest.models import Story

log = logging.getLogger("digest.collect")

_TAG = re.compile(r"<[^>]+>")
# A script or style element's body is code, not words: it goes with its tags.
_HIDDEN = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")
_TRAILING_CREDIT = re.compile(r"\s*\(([^()]*)\)\s*$")


def plain_text(value: str) -> str:
    """Markup out, entities decoded, white space folded: titles and deks are plain text."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", _HIDDEN.sub("", value or "")))).strip()


def split_credit(caption: str) -> tuple[str, str]:
    """(caption, credit): newsroom captions often end with the credit in parentheses,
    "(Doug Mills/NYT)"."""
    match = _TRAILING_CREDIT.search(caption)
    if not match:
        return caption, ""
    return caption[: match.start()].strip(), match.group(1).strip()


def entry_link(where: str, link: str, base: str) -> str:
    """An entry's absolute http(s) link, or "" after one warning line saying why not."""
    if not link:
        log.warning("%s: no link; skipped (a story needs a URL to point readers to)", where)
        return ""
    absolute = urljoin(base, link)
    if not is_safe_link(absolute):
        log.warning("%s: link %r is not http(s); skipped", where, absolute[:80])
        return ""
    return absolute


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(entry, key)  # plain dict.get: no deprecated key aliasing
        if parsed:
            # feedparser normalises to UTC struct_time.
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
    return None


def _image(entry: Any, base: str) -> tuple[str, str, str]:
    """(url, caption, credit) of the entry's picture, from Media RSS or an enclosure."""
    url = caption = credit = ""
    for media in entry.get("media_content", []) or []:
        if media.get("medium", "image") == "image" or media.get("type", "").startswith("image/"):
            url = media.get("url", "")
            break
    if not url:
        for thumb in entry.get("media_thumbnail", []) or []:
            url = thumb.get("url", "")
            break
    if not url:
        for link in entry.get("links", []) or []:
            if link.get("rel") == "enclosure" and link.get("type", "").startswith("image/"):
                url = link.get("href", "")
                break
    url = safe_image_url(url, base)
    caption = plain_text(entry.get("media_description", "") or "")
    if not caption and entry.get("media_content"):
        # feedparser 6 files <media:description> as a text/plain content item
        # rather than media_description; the body, if any, is the text/html one.
        for content in entry.get("content", []) or []:
            if content.get("type") == "text/plain":
                caption = plain_text(content.get("value", ""))
                break
    credits = entry.get("media_credit") or []
    if credits:
        credit = plain_text(credits[0].get("content", ""))
    if caption and not credit:
        caption, credit = split_credit(caption)
    return url, caption, credit


def parse_feed(data: bytes, source: str, base: str) -> list[Story]:
    """Normalise every usable entry to a Story; each unusable one gets one warning line."""
    # content-location lets feedparser resolve relative links against the feed;
    # a content-type without charset leaves the encoding to the XML declaration.
    parsed = feedparser.parse(
        data, response_headers={"content-location": base, "content-type": "application/xml"}
    )
    if parsed.bozo and not parsed.entries:
        reason = parsed.get("bozo_exception", "no entries found")
        raise InputError(f"{source}: not a readable RSS or Atom feed ({reason}); check the URL")
    if parsed.bozo:
        log.warning(
            "%s: feed is not well-formed (%s); read what could be read",
            source,
            parsed.bozo_exception,
        )
    collected_at = datetime.now(UTC)
    stories: list[Story] = []
    count = len(parsed.entries)
    for number, entry in enumerate(parsed.entries, start=1):
        title = plain_text(entry.get("title", ""))
        where = f"{source}: entry {number}" + (f" ({title[:60]!r})" if title else "")
        link = entry_link(where, entry.get("link", "") or "", base)
        if not link:
            continue
        if not title:
            log.warning("%s: no title; skipped", where)
            continue
        published = _published(entry)
        if published is None:
            log.warning("%s: no publish date; using the time it was collected", where)
            published = collected_at
        tags = entry.get("tags") or []
        section = plain_text(tags[0].get("term", "")) if tags else ""
        image_url, caption, credit = _image(entry, base)
        stories.append(
            Story(
                url=canonical_url(link),
                title=title,
                dek=plain_text(entry.get("summary", "")),
                byline=plain_text(entry.get("author", "")),
                section=section,
                image_url=image_url,
                image_caption=caption,
                image_credit=credit,
                source=source,
                published_at=published,
                # A feed lists the newsroom's own order of importance, top first.
                prominence=round(1 - (number - 1) / count, 4),
            )
        )
    return stories


def read_feed(source: str, fetcher: Fetcher | None = None) -> list[Story]:
    """The feed's stories; `fetcher` is the collect's (its limits and HTTP client)."""
    data, base = fetch(source, fetcher)
    return parse_feed(data, source, base)
