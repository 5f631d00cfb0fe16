"""CMS JSON: a WordPress site's REST API, or any JSON Feed, from a file or an http(s) URL.

Two shapes are accepted, told apart by their shape, not by the URL:

- WordPress REST API posts, `/wp-json/wp/v2/posts?_embed`: a JSON list of posts
  (https://developer.wordpress.org/rest-api/reference/posts/). `_embed` puts the
  author, the featured image and the categories inside each post; without it a post
  still gives its link, title, excerpt and date.
- JSON Feed 1.0 or 1.1 (https://jsonfeed.org/version/1.1): an object whose
  `version` is a jsonfeed.org URL, with `items`.

Posts and items come in the CMS's order (WordPress: newest first), which is taken as
the order of importance, top first, as a feed's is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from digest.collect.bodytext import html_body, plain_body, plain_text
from digest.collect.bylines import clean_names, join_names
from digest.collect.feeds import entry_link, split_credit, undated
from digest.collect.fetch import Fetcher, fetch
from digest.collect.urls import canonical_url, safe_image_url
from digest.errors import InputError
from digest.models import Story

log = logging.getLogger("digest.collect")

ACCEPTED = (
    "expected WordPress REST API posts (/wp-json/wp/v2/posts?_embed) "
    "or a JSON Feed (https://jsonfeed.org)"
)
JSON_FEED_VERSION = "https://jsonfeed.org/version/"


def read_cms(
    source: str, zone: tzinfo = UTC, fetcher: Fetcher | None = None, locale: str = "en_US"
) -> list[Story]:
    """`zone` is the newsroom's: a time without an offset is read as its local time;
    `locale`, its language, joins several authors. `fetcher` is the collect's (its limits
    and HTTP client)."""
    data, base = fetch(source, fetcher)
    return parse_cms(data, source, base, zone, locale)


def parse_cms(
    data: bytes, source: str, base: str, zone: tzinfo = UTC, locale: str = "en_US"
) -> list[Story]:
    """Every usable post or item as a Story; each unusable one gets one warning line."""
    try:
        # strict=False: real feeds carry raw control characters (tabs, newlines) in strings.
        document = json.loads(data.decode("utf-8-sig"), strict=False)
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 JSON; {ACCEPTED}") from None
    except ValueError as exc:
        raise InputError(f"{source}: not JSON ({exc}); {ACCEPTED}") from None
    if _is_wordpress(document):
        entries: list[_Entry | None] = [_wordpress_post(post, zone) for post in document]
        return _stories(entries, source, base, locale)
    if isinstance(document, dict) and str(document.get("version", "")).startswith(
        JSON_FEED_VERSION
    ):
        items = document.get("items")
        if not isinstance(items, list):
            raise InputError(f"{source}: JSON Feed without an items list; check the feed")
        entries = [_json_feed_item(i, zone) if isinstance(i, dict) else None for i in items]
        return _stories(entries, source, base, locale)
    if isinstance(document, dict) and {"code", "message"} <= document.keys():
        # What WordPress answers instead of posts: {"code": "rest_no_route", ...}.
        raise InputError(
            f"{source}: WordPress answered {document['code']!r} "
            f"({plain_text(str(document['message']))}); "
            "check the URL ends in /wp-json/wp/v2/posts?_embed"
        )
    raise InputError(f"{source}: not a format digest reads; {ACCEPTED}")


def _is_wordpress(document: Any) -> bool:
    """A list of posts, each with a link and a rendered title ([] is a site with none)."""
    return isinstance(document, list) and all(
        isinstance(post, dict) and "link" in post and isinstance(post.get("title"), dict)
        for post in document
    )


@dataclass
class _Entry:
    """What one post or item gives, before the checks every story must pass."""

    link: str
    title: str
    published: datetime | None
    dek: str = ""
    authors: list[str] = field(default_factory=list)
    section: str = ""
    image: str = ""
    caption: str = ""
    body: str = ""


def _stories(entries: list[_Entry | None], source: str, base: str, locale: str) -> list[Story]:
    stories: list[Story] = []
    count = len(entries)
    for number, entry in enumerate(entries, start=1):
        if entry is None:
            log.warning("%s: entry %d is not a JSON object; skipped", source, number)
            continue
        title = entry.title
        where = f"{source}: entry {number}" + (f" ({title[:60]!r})" if title else "")
        link = entry_link(where, entry.link, base)
        if not link:
            continue
        if not title:
            log.warning("%s: no title; skipped", where)
            continue
        if entry.published is None:
            undated(where)
            continue
        caption, credit = split_credit(entry.caption)
        stories.append(
            Story(
                url=canonical_url(link),
                title=title,
                published_at=entry.published,
                dek=entry.dek,
                byline=join_names(clean_names(entry.authors), locale),
                section=entry.section,
                image_url=safe_image_url(entry.image, base),
                image_caption=caption,
                image_credit=credit,
                body=entry.body,
                source=source,
                # The CMS's order (WordPress: newest first) is the order of importance.
                prominence=round(1 - (number - 1) / count, 4),
            )
        )
    return stories


def _timestamp(value: Any, zone: tzinfo) -> datetime | None:
    """An ISO 8601 / RFC 3339 time in UTC; one without an offset is taken in `zone`."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None  # not a date, or one at the edge of time (0001-01-01T00:00+01:00)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _rendered(value: Any) -> str:
    """WordPress's {"rendered": "<p>HTML</p>"} fields, as plain text."""
    return plain_text(_text(value.get("rendered")) if isinstance(value, dict) else _text(value))


def _rendered_body(value: Any) -> str:
    """A WordPress {"rendered": "<p>HTML</p>"} field as body text, its paragraphs kept."""
    return html_body(_text(value.get("rendered")) if isinstance(value, dict) else "")


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _names(people: list[dict[str, Any]]) -> list[str]:
    return [_text(person.get("name")) for person in people]


def _wordpress_post(post: dict[str, Any], zone: tzinfo) -> _Entry:
    embedded = post.get("_embedded")
    embedded = embedded if isinstance(embedded, dict) else {}
    categories = [
        term
        for group in embedded.get("wp:term") or []
        for term in _objects(group)
        # "Uncategorized" is WordPress's placeholder for no category, not a section.
        if term.get("taxonomy") == "category" and term.get("slug") != "uncategorized"
    ]
    # A private or deleted picture embeds as an error object without a source_url.
    media = next(iter(_objects(embedded.get("wp:featuredmedia"))), {})
    return _Entry(
        link=_text(post.get("link")),
        title=_rendered(post.get("title")),
        # date_gmt is UTC written without an offset; date, the site's local time, is
        # the fallback for a post that has none (WordPress leaves drafts without one).
        published=_timestamp(post.get("date_gmt"), UTC) or _timestamp(post.get("date"), zone),
        # WordPress ends a cut excerpt with "[…]" (its excerpt_more); the dek needs none.
        dek=_rendered(post.get("excerpt")).removesuffix("[…]").rstrip(),
        authors=_names(_objects(embedded.get("author"))),
        section=plain_text(_text(categories[0].get("name"))) if categories else "",
        image=_text(media.get("source_url")),
        caption=_rendered(media.get("caption")) or plain_text(_text(media.get("alt_text"))),
        # A password-protected post renders its content as "": the excerpt is what shows.
        body=_rendered_body(post.get("content")) or _rendered_body(post.get("excerpt")),
    )


def _json_feed_item(item: dict[str, Any], zone: tzinfo) -> _Entry:
    # JSON Feed 1.1 has `authors`; 1.0 had a single `author`.
    authors = _objects(item.get("authors")) or _objects([item.get("author")])
    tags = [tag for tag in item.get("tags") or [] if isinstance(tag, str)]
    return _Entry(
        link=_text(item.get("url")),
        title=plain_text(_text(item.get("title"))),
        published=_timestamp(item.get("date_published"), zone),
        dek=plain_text(_text(item.get("summary"))),
        authors=_names(authors),
        section=plain_text(tags[0]) if tags else "",
        image=_text(item.get("image")) or _text(item.get("banner_image")),
        body=html_body(_text(item.get("content_html")))
        or plain_body(_text(item.get("content_text")))
        or plain_body(_text(item.get("summary"))),
    )
