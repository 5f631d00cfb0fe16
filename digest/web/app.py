"""The web app: the unsubscribe pages (RFC 8058 one-click) and SendGrid's signed event
webhook, both ending in suppressions.

Thin: requests in, pages out. What happens is decided by digest.subscribers (leaving)
and digest.send.sendgrid_events (SendGrid's events).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from email.parser import BytesParser
from email.policy import default as default_policy
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from digest import jobs
from digest.config import DEFAULT_TEMPLATES, Settings
from digest.send import sendgrid_events
from digest.send.sendgrid_events import (
    MalformedEvents,
    SignatureRejected,
    Verifier,
    WebhookNotConfigured,
)
from digest.store import Store
from digest.subscribers import left_already, masked, token_address, unsubscribe

log = logging.getLogger("digest.web")

#: A one-click POST is 26 bytes; a SendGrid batch is far below this.
MAX_FORM_BYTES = 64 * 1024
MAX_WEBHOOK_BYTES = 10 * 1024 * 1024

#: The pages carry a token that can unsubscribe someone: no cache keeps them, no
#: Referer takes the URL to the newsroom's site, no script runs, no frame holds them.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
#: An edition's web copy shows its pictures (from the newsroom's site); nothing else
#: changes: it is the email's HTML, which holds no script (render.check_html).
_EDITION_HEADERS = {
    **_PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")


class _Pages:
    """The HTML pages, from templates/web (autoescaped), in the newsroom's name and colour."""

    def __init__(self, settings: Settings) -> None:
        # A newsroom with its own [templates] dir may have no web/ folder: fall back to ours.
        folders = dict.fromkeys([settings.templates_dir / "web", DEFAULT_TEMPLATES / "web"])
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in folders]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        color = settings.newsroom.brand_color
        self._common = {
            "newsroom": settings.newsroom,
            # It lands inside <style>, where HTML escaping does not protect.
            "brand_color": color if _HEX_COLOR.fullmatch(color) else "#1a4e8a",
            "contact": settings.sender.reply_to or settings.sender.from_email,
        }

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self._env.get_template(name).render(**self._common, **values)
        return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form(content_type: str, body: bytes) -> dict[str, list[str]]:
    """A form body's fields, without python-multipart.

    RFC 8058 section 3.1: the one-click POST SHOULD be multipart/form-data and MAY be
    application/x-www-form-urlencoded (what Gmail sends, per its sender guidelines,
    https://support.google.com/mail/answer/81126). The stdlib email parser reads
    the first, parse_qs the second.
    """
    if content_type.lower().startswith("multipart/form-data"):
        head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
        try:
            message = BytesParser(policy=default_policy).parsebytes(head + body)
            fields: dict[str, list[str]] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    fields.setdefault(name, []).append(str(part.get_content()).strip())
            return fields
        except (ValueError, LookupError, TypeError):
            return {}
    return parse_qs(body.decode("utf-8", "replace"))


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The app for one newsroom. Opens the store unless given one (then the caller closes it)."""
    owned = store is None
    db = jobs.open_store(settings) if store is None else store
    pages = _Pages(settings)
    secret = settings.secret_key
    try:
        verifier: Verifier | None = Verifier.from_env(settings.env)
        unusable = ""
    except WebhookNotConfigured as exc:
        verifier, unusable = None, str(exc)
        log.warning("sendgrid webhook off: %s", unusable)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def preview(_request: Request) -> Response:
        return pages.render("unsubscribe_preview.html.j2")

    async def confirm(request: Request) -> Response:
        # A GET never unsubscribes: mail scanners and link previews fetch every link.
        email = token_address(secret, request.path_params["token"])
        if email is None:
            return pages.render("unsubscribe_broken.html.j2", status=400)
        earlier = await run_in_threadpool(left_already, db, email)
        if earlier is not None:
            return pages.render("unsubscribe_done.html.j2", address=masked(email), now=False)
        return pages.render("unsubscribe_confirm.html.j2", address=masked(email))

    async def leave(request: Request) -> Response:
        email = token_address(secret, request.path_params["token"])
        if email is None:
            return pages.render("unsubscribe_broken.html.j2", status=400)
        body = await _body(request, MAX_FORM_BYTES)
        fields = _form(request.headers.get("content-type", ""), body or b"")
        source = "one-click" if fields.get("List-Unsubscribe") == ["One-Click"] else "web"
        done = await run_in_threadpool(unsubscribe, db, email, source)
        if done.now:
            log.info("unsubscribed %s (%s)", masked(email), source)
        return pages.render("unsubscribe_done.html.j2", address=masked(email), now=done.now)

    async def edition(request: Request) -> Response:
        # The "View in browser" link of every email. Only an edition that has gone
        # out (it has a send) is public: a draft is the newsroom's until it is sent.
        html = await run_in_threadpool(jobs.sent_copy, settings, db, request.path_params["name"])
        if html is None:
            return pages.render("edition_missing.html.j2", status=404)
        return HTMLResponse(html, headers=_EDITION_HEADERS)

    async def sendgrid_webhook(request: Request) -> Response:
        if verifier is None:
            return PlainTextResponse(unusable, status_code=503)
        body = await _body(request, MAX_WEBHOOK_BYTES)
        if body is None:
            return PlainTextResponse(f"body over {MAX_WEBHOOK_BYTES} bytes", status_code=413)
        receive: Callable[[], sendgrid_events.EventReport] = partial(
            sendgrid_events.receive,
            db,
            verifier,
            body,
            request.headers.get(sendgrid_events.SIGNATURE_HEADER),
            request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
            asm_group_id=settings.delivery.asm_group_id,
        )
        try:
            report = await run_in_threadpool(receive)
        except SignatureRejected as exc:
            log.warning("sendgrid webhook: refused: %s", exc)
            return PlainTextResponse(str(exc), status_code=403)
        except MalformedEvents as exc:
            log.warning("sendgrid webhook: signed but malformed: %s", exc)
            return PlainTextResponse(str(exc), status_code=400)
        return JSONResponse(asdict(report))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                db.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/unsubscribe", preview, methods=["GET"]),
            Route("/unsubscribe/{token}", confirm, methods=["GET"]),
            Route("/unsubscribe/{token}", leave, methods=["POST"]),
            Route("/editions/{name}", edition, methods=["GET"]),
            Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
