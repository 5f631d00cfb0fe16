"""The newsroom's own click links: GET /r/<token>[/<reader>] records the click and
answers 302 to the story (digest.clicks says what a token holds and why).

A token this app did not sign, or a story no longer in the store, gets a 404 page and
no Location: a click link never sends anyone anywhere but to a story the newsroom
collected. The redirect says no-referrer, so the story's site never sees the token
(with per-reader tracking it holds the reader's sealed address), and no-store, so no
cache answers the next click without counting it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.campaign import slot_tags
from digest.clicks import Link, ReaderSeal, open_link, redirect_target
from digest.collect.urls import is_safe_link
from digest.config import Settings
from digest.store import Store, now
from digest.store.events import FIRST_PARTY, ReaderEvent, record_events
from digest.web.pages import Pages, root_of
from digest.web.writer import Batched, Writer

log = logging.getLogger("digest.web")

_REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _record_all(store: Store, events: Sequence[ReaderEvent]) -> list[None]:
    record_events(store, events)
    return [None] * len(events)


def routes(settings: Settings, store: Store, pages: Pages, writer: Writer) -> list[Route]:
    secret = settings.secret_key
    seal = ReaderSeal(secret)
    # Clicks that arrive together are written together, by the app's one writer.
    clicks: Batched[ReaderEvent, None] = Batched(writer, partial(_record_all, store))

    def broken(request: Request) -> Response:
        return pages.render("click_broken.html.j2", status=404, root=root_of(request.url.path))

    def story_url(link: Link) -> str | None:
        found = store.stories.stories_by_id([link.place.story_id]).get(link.place.story_id)
        if found is None or not is_safe_link(found.url):
            return None
        place = link.place
        return redirect_target(
            found.url, slot_tags(settings.campaign, link.edition, place.slot, place.position)
        )

    async def click(request: Request) -> Response:
        link = open_link(secret, request.path_params["token"])
        if link is None:
            return broken(request)
        reader: str | None = None
        sealed = request.path_params.get("reader")
        if sealed is not None:
            reader = seal.open(link.edition, sealed)
            if reader is None:  # the link's own part is good: count it, as nobody's
                log.info("click link %s: a reader part that does not open", link.edition)
        target = await run_in_threadpool(story_url, link)
        if target is None:
            return broken(request)
        await clicks.submit(
            ReaderEvent(
                sg_event_id=f"fp:{uuid.uuid4().hex}",
                edition=link.edition,
                batch=None,
                email=reader,
                event="click",
                timestamp=now(),
                source=FIRST_PARTY,
                slot=link.place.slot,
                position=link.place.position,
                story_id=link.place.story_id,
                url=target[:2000],
            )
        )
        return RedirectResponse(target, status_code=302, headers=_REDIRECT_HEADERS)

    return [
        Route("/r/{token}", click, methods=["GET"]),
        Route("/r/{token}/{reader}", click, methods=["GET"]),
    ]
