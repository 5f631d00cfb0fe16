"""What an article page says about itself: headline, address, time, authors, section.

Read from the page's schema.org JSON-LD (every block, `@graph` and `mainEntity`
included), its <meta> tags (OpenGraph, Dublin Core, ...), its microdata and its
markup; trafilatura's reading (`extract_metadata`) is the last resort for each field.
Each rule below was measured on the 30 fundus pages of the shared corpus
(tests/test_collect_fundus.py, docs/benchmarks.md).

**Headline.** The JSON-LD `headline` of the page's article, else og:title, else
<title>, else trafilatura's title; each without the site's name. One exception: when
og:title is also the page's own <h1> and the JSON-LD headline says something else, the
headline the page shows and shares is the story's (the JSON-LD one is then the
search-engine version: "100 years at the Los Angeles Coliseum" against the page's "One
hundred years at the Coliseum"). The site's name is a last (or first) part set off by
" | ", " - ", " – ", " — ", " :: ", " · ", " » ", "｜" or "：" that is one of the
site's names: og:site_name, application-name, twitter:site, the JSON-LD publisher and
WebSite names, or the host ("Globalnews.ca", "tagesschau.de"). Once the site's name
is off, parts naming the page's section or a breadcrumb go too ("… | Spain | The
Guardian" → "…").

**Address.** `<link rel=canonical>`, else og:url, else the address the page was
fetched from; a canonical or og:url that is a site's front page (path "/", no query)
is a misconfigured template, not the story's address, and is passed over.

**Publication time,** the first of these that is a full date and time:
1. `datePublished` of the page's article in JSON-LD; else of another JSON-LD node
   about the same page (same `url`/`@id`/`mainEntityOfPage`), in any block; else of
   the first WebPage node;
2. the <meta> names of `_DATE_META`, most specific first (`article:published_time`);
3. microdata: an element whose `itemprop` list holds `datePublished` (`itemprop=
   "datePublished dateModified"` counts), its `content` or `datetime`;
4. `<time pubdate>`, else the first `<time datetime>` in the page's <article> or
   <main>, else the page's only `<time datetime>`;
then (pages.py) trafilatura's day, placed at local noon. A time without an offset is
the newsroom's local time.

**Authors.** The JSON-LD article's `author` (names, Person or Organization nodes, @id
references), else trafilatura's; cleaned by bylines.py. A page signed by its publisher
("DER SPIEGEL", a staff story) keeps that byline.

**Section.** Only real section metadata: `article:section` (or og:article:section),
else JSON-LD `articleSection` (its first; of "A,B", A). Content systems' placeholders are no
section: "Uncategorized", "post", "All", "General", "Home", "tags", ... (`_NOT_SECTIONS`).
"News" is kept: it is a real section of many local newsrooms (the sample newsroom's
"More in News").
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from digest.collect.bodytext import plain_text
from digest.collect.bylines import clean_names
from digest.collect.urls import canonical_url, is_safe_link

if TYPE_CHECKING:
    from lxml.html import HtmlElement

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
DAY_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Some CMSs still wrap JSON-LD in an HTML comment or a CDATA section.
_JSON_WRAPPER = re.compile(r"^\s*(?:<!--|(?://\s*)?<!\[CDATA\[)|(?:-->|(?://\s*)?\]\]>)\s*$")
_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|·|»)\s+|\s*[｜：]\s*")
_NOT_SECTIONS = frozenset(
    "post posts all uncategorized uncategorised allgemein general article articles story "  # noqa: SIM905
    "stories home homepage default blog page index none null undefined misc other tags".split()
) | {"sin categoría", "non classé"}
# Host labels too common to name a site: news.example.org is example.org's.
_GENERIC_LABELS = frozenset("www www1 www2 m amp mobile edition news com org net co gov".split())  # noqa: SIM905


@dataclass
class PageMeta:
    """What `read_meta` found; "" or None for what the page does not say."""

    title: str
    url: str
    published: datetime | None
    authors: list[str] = field(default_factory=list)
    section: str = ""
    dek: str = ""
    day: str = ""  # trafilatura's day (YYYY-MM-DD) when no full time was found
    image: Any = None  # the JSON-LD article's image (a URL, an ImageObject, ...)
    image_url: str = ""  # og:image or the JSON-LD image's address


def read_meta(tree: HtmlElement, base: str, zone: tzinfo = UTC) -> PageMeta:
    """The page's metadata by the rules of the module docstring."""
    from trafilatura import extract_metadata  # 0.2 s to import: see pages.read_page

    article, nodes = json_ld(tree)
    # The page's address helps htmldate find a day in paths like /2025/12/04/.
    meta = extract_metadata(tree, default_url=base if is_safe_link(base) else None)
    url = story_link(_declared_url(tree, base), base)
    sites = _site_names(tree, article, nodes, url or base)
    section = _section(tree, article)
    labels = _breadcrumbs(nodes) | ({section.casefold()} if section else set())
    authors = clean_names(_names(article.get("author"), nodes)) or clean_names(
        (meta.author or "").split(";")
    )
    image = deref(first(article.get("image")), nodes)
    return PageMeta(
        title=_headline(tree, article, sites, labels) or plain_text(meta.title or ""),
        url=url,
        published=_published_time(tree, article, nodes, url, zone),
        authors=authors,
        section=section,
        dek=plain_text(meta.description or text(article.get("description"))),
        day=meta.date or "",
        image=image,
        image_url=meta.image or image_address(image),
    )


# -- the headline ------------------------------------------------------------------------


def _headline(tree: HtmlElement, article: dict[str, Any], sites: set[str], labels: set[str]) -> str:
    def tag(name: str) -> str:
        found = tree.xpath(f"//meta[@property='{name}' or @name='{name}']/@content")
        return plain_text(str(found[0])) if found else ""

    declared = without_site(plain_text(text(article.get("headline"))), sites, labels)
    shared = without_site(tag("og:title"), sites, labels)
    if declared and shared and shared != declared:
        shown = {plain_text(h.text_content()) for h in tree.iter("h1")}
        if shared in shown:
            return shared
    titled = without_site(plain_text(" ".join(tree.xpath("//title/text()"))), sites, labels)
    return declared or shared or titled


def without_site(title: str, sites: set[str], labels: Collection[str] = ()) -> str:
    """`title` without the site's name at its end (or start), and, once that is off,
    without the section or breadcrumb parts next to it."""
    parts = _TITLE_SEPARATORS.split(title)
    marks = _TITLE_SEPARATORS.findall(title)
    if len(parts) < 2:
        return title
    start, end = 0, len(parts)
    if _is_site(parts[-1], sites):
        end -= 1
        while end - start > 1 and parts[end - 1].casefold() in labels:
            end -= 1
    elif _is_site(parts[0], sites):
        start += 1
    if end - start == len(parts):
        return title
    kept = parts[start]
    for mark, part in zip(marks[start : end - 1], parts[start + 1 : end], strict=True):
        kept += mark + part
    return kept.strip() or title


def _is_site(part: str, sites: set[str]) -> bool:
    key = _squeezed(part)
    if not key or len(part.split()) > 6:
        return False
    for site in sites:
        if key == site:
            return True
        # "Daily Mail Online" for a site named "Mail Online"; "The West Australia" for
        # "The West Australian" (a <title> cut short).
        if len(site) >= 5 and site in key:
            return True
        if len(key) >= 5 and key in site and len(key) >= 0.75 * len(site):
            return True
    return False


def _squeezed(name: str) -> str:
    """Letters and digits only, case-folded: "The Guardian", "theguardian.com" compare."""
    return "".join(c for c in name.casefold() if c.isalnum())


def _site_names(
    tree: HtmlElement, article: dict[str, Any], nodes: dict[str, dict[str, Any]], url: str
) -> set[str]:
    names = [
        str(value)
        for value in tree.xpath(
            "//meta[@property='og:site_name' or @name='application-name'"
            " or @name='twitter:site' or @property='twitter:site']/@content"
        )
    ]
    publisher = deref(first(article.get("publisher")), nodes)
    names += [text(as_dict(publisher).get("name"))]
    names += [text(n.get("name")) for n in nodes.values() if "WebSite" in types(n)]
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    if host:
        names.append(host)
        names += [label for label in host.split(".")[:-1] if label not in _GENERIC_LABELS]
    squeezed = {_squeezed(name.lstrip("@")) for name in names}
    return {name for name in squeezed if len(name) >= 3}


def _breadcrumbs(nodes: dict[str, dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for node in nodes.values():
        if "BreadcrumbList" in types(node):
            for item in node.get("itemListElement") or []:
                item = as_dict(item)
                name = text(item.get("name")) or text(as_dict(item.get("item")).get("name"))
                if name:
                    names.add(plain_text(name).casefold())
    return names


# -- the section -------------------------------------------------------------------------


def _section(tree: HtmlElement, article: dict[str, Any]) -> str:
    declared = tree.xpath(
        "//meta[@property='article:section' or @name='article:section'"
        " or @property='og:article:section']/@content"
    )
    for value in [*map(str, declared), first_text(article.get("articleSection"))]:
        # "Global,Innovation": a list in one string; its first is the section.
        section = plain_text(value.split(",")[0])
        if section and section.casefold() not in _NOT_SECTIONS:
            return section
    return ""


# -- the address -------------------------------------------------------------------------


def _declared_url(tree: HtmlElement, base: str) -> str:
    """<link rel=canonical> (anywhere in the page: trafilatura looks in <head> only),
    else og:url; one that is a front page is passed over."""
    canonical = tree.xpath(
        "//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href"
    )
    shared = tree.xpath("//meta[@property='og:url' or @name='og:url']/@content")
    for declared in [*canonical[:1], *shared[:1]]:
        declared = str(declared).strip()
        parts = urlsplit(urljoin(base, declared))
        if declared and not (parts.path in ("", "/") and not parts.query):
            return declared
    return ""


def story_link(declared: str, base: str) -> str:
    """The page's own canonical address, else where it was fetched from, if http(s)."""
    for candidate in (urljoin(base, declared) if declared else "", base):
        if candidate and is_safe_link(candidate):
            return canonical_url(candidate)
    return ""


# -- JSON-LD (https://json-ld.org, schema.org vocabulary) -------------------------------


def json_ld(tree: HtmlElement) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The page's first Article-like JSON-LD node (or {}), and every node: by its @id,
    or, for one without, by its place ("#2")."""
    found: list[dict[str, Any]] = []
    for script in tree.xpath("//script[contains(translate(@type, 'LDJSON', 'ldjson'), 'ld+json')]"):
        content = _JSON_WRAPPER.sub("", (script.text or "").strip()).strip()
        try:
            found.extend(_walk(json.loads(content, strict=False)))
        except ValueError:
            continue  # one broken block must not hide the others
    nodes: dict[str, dict[str, Any]] = {}
    for number, node in enumerate(found):
        key = node.get("@id")
        nodes.setdefault(key if isinstance(key, str) and len(node) > 1 else f"#{number}", node)
    for node in found:
        if any(t.endswith(("Article", "Posting")) or t == "Report" for t in types(node)):
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


def types(node: dict[str, Any]) -> list[str]:
    kind = node.get("@type", [])
    return [t for t in (kind if isinstance(kind, list) else [kind]) if isinstance(t, str)]


def deref(value: Any, nodes: dict[str, dict[str, Any]]) -> Any:
    """A {"@id": ...} reference (Yoast's @graph uses them) as the node it names."""
    if isinstance(value, dict) and set(value) <= {"@id", "@type"} and "@id" in value:
        return nodes.get(value["@id"], value)
    return value


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def first_text(value: Any) -> str:
    return text(first(value))


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any, nodes: dict[str, dict[str, Any]]) -> list[str]:
    """Author names from a string, a Person/Organization node or a list of them."""
    names = []
    for item in value if isinstance(value, list) else [value]:
        item = deref(item, nodes)
        names.append(item if isinstance(item, str) else text(as_dict(item).get("name")))
    return names


def image_address(image: Any) -> str:
    if isinstance(image, str):
        return image
    node = as_dict(image)
    return first_text(node.get("url")) or first_text(node.get("contentUrl"))


# -- publication time -------------------------------------------------------------------


def _published_time(
    tree: HtmlElement,
    article: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    url: str,
    zone: tzinfo,
) -> datetime | None:
    """The first full timestamp the page declares for its publication, in UTC."""
    for value in _time_candidates(tree, article, nodes, url):
        published = timestamp(value, zone)
        if published is not None:
            return published
    return None


def _time_candidates(
    tree: HtmlElement, article: dict[str, Any], nodes: dict[str, dict[str, Any]], url: str
) -> Iterator[str]:
    # 1. JSON-LD: the article, then nodes about the same page, then the first WebPage.
    yield first_text(article.get("datePublished"))
    same_page = {url, url.rstrip("/")} - {""}
    about: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    for node in nodes.values():
        addresses = {
            text(node.get("url")),
            text(node.get("@id")),
            text(node.get("mainEntityOfPage")),
            text(as_dict(node.get("mainEntityOfPage")).get("@id")),
        }
        if any(canonical_url(a).rstrip("/") in same_page for a in addresses if a):
            about.append(node)
        elif any(t.endswith("WebPage") for t in types(node)):
            pages.append(node)
    for node in [*about, *pages[:1]]:
        yield first_text(node.get("datePublished"))
    # 2. <meta> names, most specific first.
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").lower()
        if key in _DATE_META and key not in metas:
            metas[key] = meta.get("content") or ""
    yield from (metas[key] for key in _DATE_META if key in metas)
    # 3. microdata, itemprop being a list of names.
    for element in tree.xpath(
        "//*[contains(concat(' ', normalize-space(@itemprop), ' '), ' datePublished ')]"
    ):
        yield element.get("content") or element.get("datetime") or element.text_content()
    # 4. <time>.
    yield from map(str, tree.xpath("//time[@pubdate]/@datetime"))
    yield from map(str, tree.xpath("(//article//time | //main//time)[@datetime][1]/@datetime"))
    every = tree.xpath("//time/@datetime")
    if len(every) == 1:
        yield str(every[0])


def timestamp(value: str, zone: tzinfo) -> datetime | None:
    """An ISO 8601 or RFC 2822 date-time in UTC; None for a bare day or anything else."""
    value = value.strip()
    if not value or DAY_ONLY.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return local(moment, zone)


def local(moment: datetime, zone: tzinfo) -> datetime:
    """In UTC; a time without an offset is taken as the newsroom's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)
