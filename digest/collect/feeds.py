"""RSS and Atom feeds, read with feedparser from a file or an http(s) URL."""

from __future__ import annotations

import calendar
import logging
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.collect.bodytext import html_body, plain_body, plain_text
from digest.collect.bylines import clean_byline
from digest.collect.fetch import Fetcher, fetch
from digest.collect.urls import canonical_url, is_safe_link, safe_image_url
from digest.errors import InputError
from digest.models import Story

log = logging.getLogger("digest.collect")

#: The date rule, one line for feeds, CMS posts and pages alike (see digest/collect/__init__.py).
NO_DATE = "no valid publish date; skipped (a story without a date has no day's edition)"
_TRAILING_CREDIT = re.compile(r"\s*\(([^()]*)\)\s*$")


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


# RFC 822 dates with the day and month named in Portuguese, Spanish, German or Italian,
# as UOL (Brazil) writes them: "Seg, 24 Set 2018 19:42:40 -0300". RFC 822 names them in
# English only, and so does feedparser; the date is there all the same. The first
# three letters tell every month of these languages apart.
_MONTHS = {
    **dict.fromkeys(("jan", "ene", "gen"), 1),
    **dict.fromkeys(("feb", "fev"), 2),
    **dict.fromkeys(("mar", "mär", "mrz"), 3),
    **dict.fromkeys(("apr", "abr"), 4),
    **dict.fromkeys(("may", "mai", "mag"), 5),
    **dict.fromkeys(("jun", "giu"), 6),
    **dict.fromkeys(("jul", "lug"), 7),
    **dict.fromkeys(("aug", "ago"), 8),
    **dict.fromkeys(("sep", "set"), 9),
    **dict.fromkeys(("oct", "out", "okt", "ott"), 10),
    **dict.fromkeys(("nov",), 11),
    **dict.fromkeys(("dec", "dez", "dic"), 12),
}
_ENGLISH_MONTHS = frozenset(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
)
_ENGLISH_DAYS = frozenset(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
_NAMED_DATE = re.compile(
    r"\s*(?:(?P<day_name>[^\W\d]+)\.?,?\s+)?(?P<day>\d{1,2})\s+(?P<month>[^\W\d]+)\.?\s+"
    r"(?P<year>\d{4})\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"\s*(?P<zone>[+-]\d{4}|GMT|UTC|UT|Z)?\s*"
)


def _rfc822_in_other_languages(value: str) -> time.struct_time | None:
    """feedparser's date handler for the dates above; English ones are left to feedparser."""
    match = _NAMED_DATE.fullmatch(value)
    if not match:
        return None
    month_name = match["month"].casefold()[:3]
    day_name = (match["day_name"] or "mon").casefold()[:3]
    if month_name in _ENGLISH_MONTHS and day_name in _ENGLISH_DAYS:
        return None
    zone = match["zone"] or "+0000"
    offset = 0 if zone.isalpha() else int(zone[0] + "1") * (int(zone[1:3]) * 60 + int(zone[3:]))
    try:
        moment = datetime(
            int(match["year"]),
            _MONTHS[month_name],
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
            tzinfo=timezone(timedelta(minutes=offset)),
        )
        return moment.astimezone(UTC).timetuple()
    except (KeyError, ValueError, OverflowError):
        return None


feedparser.registerDateHandler(_rfc822_in_other_languages)


def undated(where: str) -> None:
    """The one line for an entry, post or page skipped for want of a date."""
    log.warning("%s: %s", where, NO_DATE)


def _published(entry: Any) -> datetime | None:
    """The entry's publication date (else its updated or created date), if it has one
    feedparser could read (https://feedparser.readthedocs.io/en/latest/date-parsing.html)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(entry, key)  # plain dict.get: no deprecated key aliasing
        if parsed:
            try:
                # feedparser normalises to UTC struct_time.
                return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (OverflowError, OSError, ValueError):
                continue  # a year the platform cannot hold is no date
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


def _body(entry: Any) -> str:
    """`content:encoded` or Atom `<content>` (an HTML one first), else the summary.

    feedparser files both as `content` items; it also files <media:description> there, as
    text/plain, which is the picture's caption (see `_image`), not the story's body: with
    Media RSS pictures, a text/plain content is not taken.
    """
    kinds = ["text/html", "application/xhtml+xml"]
    if not entry.get("media_content"):
        kinds.append("text/plain")  # Atom <content type="text">
    contents = [c for c in entry.get("content", []) or [] if c.get("value")]
    for kind in kinds:
        read = plain_body if kind == "text/plain" else html_body
        for content in contents:
            if content.get("type") == kind and (body := read(content["value"])):
                return body
    return html_body(entry.get("summary", "") or "")


def parse_feed(data: bytes, source: str, base: str, locale: str = "en_US") -> list[Story]:
    """Normalise every usable entry to a Story; each unusable one gets one warning line.
    `locale` is the newsroom's: a byline naming several people is joined in its words."""
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
            undated(where)
            continue
        tags = entry.get("tags") or []
        section = plain_text(tags[0].get("term", "")) if tags else ""
        image_url, caption, credit = _image(entry, base)
        stories.append(
            Story(
                url=canonical_url(link),
                title=title,
                dek=plain_text(entry.get("summary", "")),
                byline=clean_byline(entry.get("author", "") or "", locale),
                section=section,
                image_url=image_url,
                image_caption=caption,
                image_credit=credit,
                body=_body(entry),
                source=source,
                published_at=published,
                # A feed lists the newsroom's own order of importance, top first.
                prominence=round(1 - (number - 1) / count, 4),
            )
        )
    return stories


def read_feed(source: str, fetcher: Fetcher | None = None, locale: str = "en_US") -> list[Story]:
    """The feed's stories; `fetcher` is the collect's (its limits and HTTP client)."""
    data, base = fetch(source, fetcher)
    return parse_feed(data, source, base, locale)
