"""Article pages: the newsroom's story pages, read for the metadata they carry.

A `pages` source is an ordered list whose entries are article URLs, local HTML
files, globs of local files (`pages/*.html`, in name order) or a `.txt` file of
URLs or paths, one a line, `#` starting a comment. The list's order is the
newsroom's order of importance, top first, as a feed's is.

trafilatura reads each page's OpenGraph, <meta>, JSON-LD and markup. Two fields
come first from the article's own schema.org JSON-LD (`NewsArticle` and kin),
because on real pages trafilatura's answer is the weaker one (measured on the 30
fundus pages in the shared corpus):

- the headline: trafilatura prefers og:title, the social-media title, which is
  often shorter than the headline or carries the site's name (19 of 30 right,
  against 26 of 30 for JSON-LD `headline`);
- the publication time: trafilatura (htmldate) gives the day only, and a story
  must be placed in a 24-hour window, so the full timestamp with its offset is
  read from JSON-LD `datePublished` or `article:published_time`; trafilatura's
  day is the last resort.

A page that cannot be fetched or is not HTML is one error line; one without a
title, a date or an http(s) address is one warning line and skipped. Either way
the other pages go on.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from digest.collect.feeds import plain_text, split_credit, undated
from digest.collect.fetch import Fetcher, fetch
from digest.collect.urls import canonical_url, is_safe_link, safe_image_url
from digest.errors import InputError
from digest.models import Story

if TYPE_CHECKING:
    from lxml.html import HtmlElement

log = logging.getLogger("digest.collect")

#: A `.txt` entry is a list of pages, not a page.
LIST_SUFFIX = ".txt"
_GLOB_CHARS = re.compile(r"[*?\[]")
# "# ..." at the start of a line or after a space; a "#" inside a URL is its fragment.
_COMMENT = re.compile(r"(?:^|\s)#.*$")
# What an HTML document opens with, within its first few kilobytes.
_HTML_START = re.compile(rb"<(?:!doctype\s+html|html|head|body|meta|title)[\s>/]", re.IGNORECASE)
# Publication-time <meta> names, most specific first: OpenGraph article
# (https://ogp.me/#type_article), schema.org microdata, Parse.ly, Sailthru, Dublin Core.
_DATE_META = (
    "article:published_time",
    "og:article:published_time",
    "og:published_time",
    "datepublished",
    "parsely-pub-date",
    "sailthru.date",
    "pubdate",
    "publishdate",
    "publish-date",
    "dcterms.issued",
    "dc.date.issued",
    "dcterms.date",
    "dc.date",
)
_DAY_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A story known only by its day is placed at noon, local time: most of a day's
# stories go up after the morning send, so noon puts it in the next morning's
# edition, the one that covers that day.
_DAY_ONLY_AT = time(12, 0)
# WordPress and most CDNs name resized copies "photo-300x200.jpg".
_SIZE_SUFFIX = re.compile(r"[-_]\d+x\d+$")
# "Photograph: Eva Manez/Reuters" (the Guardian), "Foto: ..." (Der Spiegel, El País).
_CREDIT_LABEL = re.compile(
    r"(?:^|\s)(?:photograph|photo|picture|image|foto|credit|bild)s?\s*:\s*(?P<credit>.+)$",
    re.IGNORECASE,
)
# Some CMSs still wrap JSON-LD in an HTML comment or a CDATA section.
_JSON_WRAPPER = re.compile(r"^\s*(?:<!--|(?://\s*)?<!\[CDATA\[)|(?:-->|(?://\s*)?\]\]>)\s*$")
_VISIBLE_TEXT = ".//text()[not(ancestor::svg) and not(ancestor::script) and not(ancestor::style)]"


@dataclass
class PagesRead:
    """The stories read from a `pages` list, and the entries that could not be read."""

    stories: list[Story] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def read_pages(
    sources: Sequence[str], zone: tzinfo = UTC, fetcher: Fetcher | None = None
) -> PagesRead:
    """Every page the entries name, in their order; each problem is one log line.

    `zone` is the newsroom's: a page time without an offset is read as its local time.
    `fetcher` is the collect's (its limits and HTTP client); without one, the pages
    share one of their own.
    """
    if fetcher is None:
        with Fetcher() as own:
            return read_pages(sources, zone, own)
    result = PagesRead()
    located: list[tuple[str, str]] = []  # (page, the entry that named it)
    for source in sources:
        try:
            located.extend((page, source) for page in page_locations(source))
        except InputError as exc:
            log.error("%s", exc)
            result.failed.append(source)
    count = len(located)
    seen: set[str] = set()
    for number, (page, source) in enumerate(located, start=1):
        try:
            story = read_page(page, zone, source=source, fetcher=fetcher)
        except InputError as exc:
            log.error("%s", exc)
            result.failed.append(page)
            continue
        if story is None:
            continue
        if story.url in seen:
            log.info("%s: %s is listed already; kept the first", page, story.url)
            continue
        seen.add(story.url)
        # The list is the newsroom's order of importance, top first.
        story.prominence = round(1 - (number - 1) / count, 4)
        result.stories.append(story)
    return result


def page_locations(source: str) -> list[str]:
    """The pages one entry names: itself, the files its glob matches, or its list's lines."""
    if urlsplit(source).scheme in ("http", "https"):
        return [source]
    path = source.removeprefix("file://")
    if _GLOB_CHARS.search(path):
        matches = sorted(p for p in glob.glob(path, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError(f"{source}: no files match; check the pattern")
        return matches
    if path.lower().endswith(LIST_SUFFIX):
        return _listed_pages(Path(path), source)
    return [path]


def _listed_pages(path: Path, source: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text; save the list as UTF-8") from None
    pages = []
    for line in text.splitlines():
        entry = _COMMENT.sub("", line).strip()
        if not entry:
            continue
        if urlsplit(entry).scheme in ("http", "https"):
            pages.append(entry)
        else:
            # Paths in a list are relative to the list, as digest.toml's are to it.
            local = Path(entry.removeprefix("file://")).expanduser()
            pages.append(str(local if local.is_absolute() else path.parent / local))
    if not pages:
        raise InputError(f"{source}: lists no pages; put one URL or path on each line")
    return pages


def read_page(
    page: str, zone: tzinfo = UTC, source: str = "", fetcher: Fetcher | None = None
) -> Story | None:
    """One page as a Story; None (with a warning line) if it lacks what a story needs.

    Raises InputError when the page cannot be fetched or is not an HTML page.
    """
    # Imported here, not at the top: every digest process imports this package (render
    # checks links with urls.py), and trafilatura costs 0.2 s and 8 MB that a send or a
    # feeds-only newsroom never needs.
    from trafilatura import load_html

    data, base = fetch(page, fetcher)
    if not _HTML_START.search(data[:8192]):
        raise InputError(f"{page}: not an HTML page; check the URL or path")
    tree = load_html(data)
    if tree is None:
        raise InputError(f"{page}: not an HTML page; check the URL or path")
    return parse_page(tree, page, base, zone, source=source or page)


def parse_page(
    tree: HtmlElement, page: str, base: str, zone: tzinfo = UTC, source: str = ""
) -> Story | None:
    """Normalise a parsed page to a Story, or say in one warning line why it cannot be one."""
    from trafilatura import extract_metadata  # see read_page

    article, nodes = _json_ld_article(tree)
    published = _published_time(tree, article, zone)
    # The page's address helps htmldate find a day in paths like /2025/12/04/.
    meta = extract_metadata(tree, default_url=base if is_safe_link(base) else None)

    title = plain_text(_text(article.get("headline"))) or plain_text(meta.title or "")
    if not title:
        log.warning("%s: no title (no headline, og:title or <title>); skipped", page)
        return None
    where = f"{page} ({title[:60]!r})"
    if published is None and meta.date and _DAY_ONLY.match(meta.date):
        log.warning("%s: the page gives only the day it was published; placed at noon", where)
        published = _local(datetime.combine(date.fromisoformat(meta.date), _DAY_ONLY_AT), zone)
    if published is None:
        # Looked for: JSON-LD datePublished, the <meta> names in _DATE_META, <time
        # pubdate>, then trafilatura's day.
        undated(where)
        return None
    link = _story_link(meta.url or _declared_url(tree), base)
    if not link:
        log.warning(
            "%s: no http(s) address (link rel=canonical or og:url); skipped "
            "(a story needs a URL to point readers to)",
            where,
        )
        return None

    authors = _names(article.get("author"), nodes) or _distinct((meta.author or "").split(";"))
    section = meta.categories[0] if meta.categories else _first_text(article.get("articleSection"))
    image = _deref(_first(article.get("image")), nodes)
    image_url = safe_image_url(meta.image or _image_address(image), base)
    caption, credit = _caption_and_credit(tree, image, image_url) if image_url else ("", "")
    return Story(
        url=link,
        title=title,
        published_at=published,
        dek=plain_text(meta.description or _text(article.get("description"))),
        byline=", ".join(authors),
        section=plain_text(section),
        image_url=image_url,
        image_caption=caption,
        image_credit=credit,
        source=source or page,
    )


def _declared_url(tree: HtmlElement) -> str:
    """<link rel=canonical> or og:url anywhere in the page; trafilatura looks in <head> only."""
    found = tree.xpath(
        "//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href"
        " | //meta[@property='og:url']/@content"
    )
    return str(found[0]) if found else ""


def _story_link(declared: str, base: str) -> str:
    """The page's own canonical address, else where it was fetched from, if http(s)."""
    for candidate in (urljoin(base, declared.strip()) if declared else "", base):
        if candidate and is_safe_link(candidate):
            return canonical_url(candidate)
    return ""


# -- JSON-LD (https://json-ld.org, schema.org vocabulary) -------------------------------


def _json_ld_article(tree: HtmlElement) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The page's first Article-like JSON-LD node (or {}), and every node by its @id."""
    found: list[dict[str, Any]] = []
    for script in tree.xpath("//script[contains(translate(@type, 'LDJSON', 'ldjson'), 'ld+json')]"):
        text = (script.text or "").strip()
        text = _JSON_WRAPPER.sub("", text).strip()
        try:
            found.extend(_walk(json.loads(text, strict=False)))
        except ValueError:
            continue  # one broken block must not hide the others
    nodes = {n["@id"]: n for n in found if isinstance(n.get("@id"), str) and len(n) > 1}
    for node in found:
        if any(t.endswith(("Article", "Posting")) or t == "Report" for t in _types(node)):
            return node, nodes
    return {}, nodes


def _walk(item: Any) -> Iterator[dict[str, Any]]:
    if isinstance(item, list):
        for value in item:
            yield from _walk(value)
    elif isinstance(item, dict):
        yield item
        for key in ("@graph", "mainEntity"):
            if key in item:
                yield from _walk(item[key])


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("@type", [])
    return [t for t in (kind if isinstance(kind, list) else [kind]) if isinstance(t, str)]


def _deref(value: Any, nodes: dict[str, dict[str, Any]]) -> Any:
    """A {"@id": ...} reference (Yoast's @graph uses them) as the node it names."""
    if isinstance(value, dict) and set(value) <= {"@id", "@type"} and "@id" in value:
        return nodes.get(value["@id"], value)
    return value


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first_text(value: Any) -> str:
    return _text(_first(value))


def _names(value: Any, nodes: dict[str, dict[str, Any]]) -> list[str]:
    """Author names from a string, a Person/Organization node or a list of them."""
    names = []
    for item in value if isinstance(value, list) else [value]:
        item = _deref(item, nodes)
        names.append(item if isinstance(item, str) else _text(_dict(item).get("name")))
    return _distinct(names)


def _distinct(names: list[str]) -> list[str]:
    """Plain-text names, each once: pages often repeat one in another case."""
    seen: dict[str, str] = {}
    for name in names:
        name = plain_text(name)
        if name and name.casefold() not in seen:
            seen[name.casefold()] = name
    return list(seen.values())


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _image_address(image: Any) -> str:
    if isinstance(image, str):
        return image
    node = _dict(image)
    return _first_text(node.get("url")) or _first_text(node.get("contentUrl"))


# -- publication time -------------------------------------------------------------------


def _published_time(tree: HtmlElement, article: dict[str, Any], zone: tzinfo) -> datetime | None:
    """The first full timestamp the page declares for its publication, in UTC."""
    candidates = [_text(article.get("datePublished"))]
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").lower()
        if key in _DATE_META and key not in metas:
            metas[key] = meta.get("content") or ""
    candidates += [metas[key] for key in _DATE_META if key in metas]
    candidates += tree.xpath("//time[@itemprop='datePublished' or @pubdate]/@datetime")
    for value in candidates:
        published = _timestamp(str(value), zone)
        if published is not None:
            return published
    return None


def _timestamp(value: str, zone: tzinfo) -> datetime | None:
    """An ISO 8601 or RFC 2822 date-time in UTC; None for a bare day or anything else."""
    value = value.strip()
    if not value or _DAY_ONLY.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return _local(moment, zone)


def _local(moment: datetime, zone: tzinfo) -> datetime:
    """In UTC; a time without an offset is taken as the newsroom's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


# -- the lead picture's caption and credit ---------------------------------------------


def _caption_and_credit(tree: HtmlElement, image: Any, image_url: str) -> tuple[str, str]:
    """From the JSON-LD ImageObject, else from the <figure> showing the same picture."""
    node = _dict(image)
    caption = plain_text(_text(node.get("caption")))
    credit = plain_text(
        _text(node.get("creditText"))
        or _text(_dict(node.get("copyrightHolder")).get("name"))
        or _text(node.get("author"))
        or _text(_dict(node.get("author")).get("name"))
    )
    if not caption:
        figure = _figure_showing(tree, image_url)
        if figure is not None:
            caption, figure_credit = _figure_caption(figure)
            credit = credit or figure_credit
    if caption and not credit:
        caption, credit = _split_caption(caption)
    return caption, credit


def _split_caption(caption: str) -> tuple[str, str]:
    """(caption, credit) from the ways captions carry their credit at the end:
    "... Photograph: Eva Manez/Reuters", "... (Adel Hana/AP)", "... | Niall Carson/PA"."""
    labelled = _CREDIT_LABEL.search(caption)
    if labelled:
        return caption[: labelled.start()].strip(), labelled.group("credit").strip()
    caption, credit = split_credit(caption)
    if not credit and " | " in caption:
        text, _, last = caption.rpartition(" | ")
        if len(last) <= 80:
            return text.strip(), last.strip()
    return caption, credit


def _picture_keys(url: str) -> list[str]:
    """Parts of a picture's URL that name it in any rendition: the file name without
    its size suffix, and long id-like folders (the Guardian's are content hashes)."""
    segments = [s.lower() for s in urlsplit(url).path.split("/") if s]
    if not segments:
        return []
    stem = _SIZE_SUFFIX.sub("", segments[-1].rsplit(".", 1)[0])
    keys = [stem] if len(stem) >= 8 else []  # "image", "1200": too common to tell
    keys += [s for s in segments[:-1] if len(s) >= 16 and any(c.isdigit() for c in s)]
    return keys


def _figure_showing(tree: HtmlElement, image_url: str) -> HtmlElement | None:
    keys = _picture_keys(image_url)
    if not keys:
        return None
    for figure in tree.iter("figure"):
        for img in figure.iter("img", "source"):
            sources = " ".join(
                img.get(attr) or "" for attr in ("src", "data-src", "srcset", "data-srcset")
            ).lower()
            if any(key in sources for key in keys):
                return figure
    return None


def _words(element: HtmlElement) -> str:
    """The text a reader sees: not an icon's <svg><title>, not a script."""
    return plain_text(" ".join(element.xpath(_VISIBLE_TEXT)))


def _figure_caption(figure: HtmlElement) -> tuple[str, str]:
    figcaption = next(figure.iter("figcaption"), None)
    if figcaption is None:
        return "", ""
    credit = next(
        (e for e in figcaption.iterdescendants() if "credit" in (e.get("class") or "").lower()),
        None,
    )
    if credit is None:
        return _words(figcaption), ""
    credit_text = _words(credit)
    caption = _words(figcaption).replace(credit_text, " ").strip()
    labelled = _CREDIT_LABEL.search(" " + credit_text)
    return plain_text(caption), labelled.group("credit").strip() if labelled else credit_text
