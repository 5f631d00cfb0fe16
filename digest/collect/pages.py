"""Article pages: the newsroom's story pages, read for the metadata they carry.

A `pages` source is an ordered list whose entries are article URLs, local HTML
files, globs of local files (`pages/*.html`, in name order) or a `.txt` file of
URLs or paths, one a line, `#` starting a comment. The list's order is the
newsroom's order of importance, top first, as a feed's is.

Each page's headline, address, publication time, authors and section are read by
pagemeta.py (its docstring has the order of the sources and the cleaning rules), its
main text by bodytext.py (trafilatura), its lead picture's caption and credit here.

A page that cannot be fetched or is not HTML is one error line; one without a
title, a date or an http(s) address is one warning line and skipped. Either way
the other pages go on.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from digest.collect.bodytext import page_body, plain_text
from digest.collect.bylines import join_names
from digest.collect.feeds import split_credit, undated
from digest.collect.fetch import Fetcher, fetch
from digest.collect.pagemeta import DAY_ONLY, as_dict, local, read_meta, text
from digest.collect.urls import safe_image_url
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
_VISIBLE_TEXT = ".//text()[not(ancestor::svg) and not(ancestor::script) and not(ancestor::style)]"


@dataclass
class PagesRead:
    """The stories read from a `pages` list, and the entries that could not be read."""

    stories: list[Story] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def read_pages(
    sources: Sequence[str],
    zone: tzinfo = UTC,
    fetcher: Fetcher | None = None,
    locale: str = "en_US",
) -> PagesRead:
    """Every page the entries name, in their order; each problem is one log line.

    `zone` is the newsroom's: a page time without an offset is read as its local time;
    `locale`, its language, joins several authors ("A and B").
    `fetcher` is the collect's (its limits and HTTP client); without one, the pages
    share one of their own.
    """
    if fetcher is None:
        with Fetcher() as own:
            return read_pages(sources, zone, own, locale)
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
            story = read_page(page, zone, source=source, fetcher=fetcher, locale=locale)
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
    page: str,
    zone: tzinfo = UTC,
    source: str = "",
    fetcher: Fetcher | None = None,
    locale: str = "en_US",
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
    return parse_page(tree, page, base, zone, source=source or page, locale=locale)


def parse_page(
    tree: HtmlElement,
    page: str,
    base: str,
    zone: tzinfo = UTC,
    source: str = "",
    locale: str = "en_US",
) -> Story | None:
    """Normalise a parsed page to a Story, or say in one warning line why it cannot be one.

    `locale` is the newsroom's: several authors are joined in its words ("A and B").
    """
    meta = read_meta(tree, base, zone)
    if not meta.title:
        log.warning("%s: no title (no headline, og:title or <title>); skipped", page)
        return None
    where = f"{page} ({meta.title[:60]!r})"
    published = meta.published
    if published is None and DAY_ONLY.match(meta.day):
        log.warning("%s: the page gives only the day it was published; placed at noon", where)
        published = local(datetime.combine(date.fromisoformat(meta.day), _DAY_ONLY_AT), zone)
    if published is None:
        undated(where)  # looked for: see pagemeta's docstring, then trafilatura's day
        return None
    if not meta.url:
        log.warning(
            "%s: no http(s) address (link rel=canonical or og:url); skipped "
            "(a story needs a URL to point readers to)",
            where,
        )
        return None
    image_url = safe_image_url(meta.image_url, base)
    caption, credit = _caption_and_credit(tree, meta.image, image_url) if image_url else ("", "")
    return Story(
        url=meta.url,
        title=meta.title,
        published_at=published,
        dek=meta.dek,
        byline=join_names(meta.authors, locale),
        section=meta.section,
        image_url=image_url,
        image_caption=caption,
        image_credit=credit,
        # Last: trafilatura strips the copy it is given of what it reads as boilerplate.
        body=page_body(tree),
        source=source or page,
    )


# -- the lead picture's caption and credit ---------------------------------------------


def _caption_and_credit(tree: HtmlElement, image: Any, image_url: str) -> tuple[str, str]:
    """From the JSON-LD ImageObject, else from the <figure> showing the same picture."""
    node = as_dict(image)
    caption = plain_text(text(node.get("caption")))
    credit = plain_text(
        text(node.get("creditText"))
        or text(as_dict(node.get("copyrightHolder")).get("name"))
        or text(node.get("author"))
        or text(as_dict(node.get("author")).get("name"))
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
