"""The readers' archive: every edition that went out, its web copy, and a feed of them.

GET /editions             the sent editions, newest first, PAGE_SIZE a page (?page=N)
GET /editions/feed.xml    RSS 2.0 of the latest FEED_SIZE, absolute links from [web] base_url
GET /editions/{name}      the "View in browser" copy: the whole edition as it went out

Public, so only what readers already had: an edition is listed once a batch of its
send went out (store.editions.sent_editions), and its subject is the one it was sent
with. Drafts and upcoming editions never appear; their web copy answers 404.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from email.utils import format_datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import copies
from digest.config import Settings
from digest.locale import language
from digest.store import Store
from digest.store.edition import SentEdition
from digest.web.pages import READER_HEADERS, Pages, root_of

PAGE_SIZE = 30
#: A feed reader wants the recent ones; the archive page has the rest.
FEED_SIZE = 20
#: The list and the feed change once a day at most, and name nobody: caches may keep
#: them a while (a feed reader polls), unlike the readers' pages with tokens in them.
_ARCHIVE_HEADERS = {**READER_HEADERS, "Cache-Control": "public, max-age=300"}
#: An edition's web copy shows its pictures (from the newsroom's site); nothing else
#: changes: it is the email's HTML, which holds no script (render.check_html).
_EDITION_HEADERS = {
    **READER_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
#: Characters XML 1.0 forbids even escaped (section 2.2, "Char"): a subject from a
#: feed may carry them, and one would make the whole feed unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATOM = "http://www.w3.org/2005/Atom"


def _page_number(value: str | None) -> int | None:
    """?page=N as a number from 1, None for anything else."""
    if value is None:
        return 1
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 10**6 else None


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def feed_xml(settings: Settings, editions: list[SentEdition]) -> bytes:
    """The archive as RSS 2.0 (https://www.rssboard.org/rss-specification), newest first.

    ElementTree escapes every text and attribute; links are absolute from [web]
    base_url, as a feed reader resolves nothing; each item's guid is its web copy's
    address, which never changes once the edition has gone out.
    """
    ET.register_namespace("atom", _ATOM)
    base = settings.base_url
    name = settings.newsroom.name
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    for tag, text in (
        ("title", f"{name} daily digest"),
        ("link", f"{base}/editions"),
        ("description", f"Every {name} daily digest that went out, newest first."),
        ("language", settings.newsroom.locale.replace("_", "-").lower()),
    ):
        ET.SubElement(channel, tag).text = _xml_text(text)
    ET.SubElement(
        channel,
        f"{{{_ATOM}}}link",
        href=f"{base}/editions/feed.xml",
        rel="self",
        type="application/rss+xml",
    )
    if editions:
        ET.SubElement(channel, "lastBuildDate").text = format_datetime(editions[0].sent_at)
    for edition in editions:
        item = ET.SubElement(channel, "item")
        link = f"{base}/editions/{edition.name}"
        ET.SubElement(item, "title").text = _xml_text(edition.subject)
        ET.SubElement(item, "link").text = link
        ET.SubElement(item, "guid", isPermaLink="true").text = link
        ET.SubElement(item, "pubDate").text = format_datetime(edition.sent_at)
        if edition.preheader:
            ET.SubElement(item, "description").text = _xml_text(edition.preheader)
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)


def routes(settings: Settings, store: Store, pages: Pages) -> list[Route]:
    lang = language(settings.newsroom.locale, settings.templates_dir)

    async def archive(request: Request) -> Response:
        number = _page_number(request.query_params.get("page"))
        total = await run_in_threadpool(store.editions.count_sent_editions)
        last = max(1, -(-total // PAGE_SIZE))
        if number is None or number > last:
            return pages.render(
                "archive_missing.html.j2", status=404, headers=_ARCHIVE_HEADERS, last=last
            )
        editions = await run_in_threadpool(
            store.editions.sent_editions, PAGE_SIZE, (number - 1) * PAGE_SIZE
        )
        return pages.render(
            "archive.html.j2",
            headers=_ARCHIVE_HEADERS,
            root=root_of(request.url.path),
            editions=editions,
            day_of=lambda e: lang.full_date(date.fromisoformat(e.name)),
            lang=lang.lang,
            page=number,
            last=last,
            total=total,
        )

    async def feed(_request: Request) -> Response:
        editions = await run_in_threadpool(store.editions.sent_editions, FEED_SIZE)
        return Response(
            feed_xml(settings, editions),
            media_type="application/rss+xml; charset=utf-8",
            headers=_ARCHIVE_HEADERS,
        )

    async def edition(request: Request) -> Response:
        # The "View in browser" link of every email. Only an edition that has gone
        # out (it has a send) is public: a draft is the newsroom's until it is sent.
        name = request.path_params["name"]
        html = await run_in_threadpool(copies.sent_copy, settings, store, name)
        if html is None:
            return pages.render(
                "edition_missing.html.j2", status=404, root=root_of(request.url.path)
            )
        return HTMLResponse(html, headers=_EDITION_HEADERS)

    return [
        Route("/editions", archive, methods=["GET"]),
        # Before /editions/{name}, which would take "feed.xml" for an edition's name.
        Route("/editions/feed.xml", feed, methods=["GET"]),
        Route("/editions/{name}", edition, methods=["GET"]),
    ]
