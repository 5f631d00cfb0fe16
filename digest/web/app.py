"""The web app: the unsubscribe pages (RFC 8058 one-click) and SendGrid's signed event
webhook, both ending in suppressions; the archive of sent editions with their web
copies and its feed (archive); the newsroom's own click links (clicks); and, for the
newsroom only, the editor's pages (editor_pages), the operators' (sends_pages, whose
sends run in the app's threads: send_runs) and the editions' reports (reports_pages).

Thin: requests in, pages out. What happens is decided by digest.subscribers (leaving),
digest.send.sendgrid_events (SendGrid's events), digest.editor and digest.jobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from digest import jobs, media
from digest.config import Settings
from digest.send import sendgrid_events
from digest.send.durable import is_transient, reason
from digest.send.sendgrid_events import (
    MalformedEvents,
    SignatureRejected,
    Verifier,
    WebhookNotConfigured,
)
from digest.store import Store
from digest.subscribers import Unsubscribed, left_already, masked, token_address, unsubscribe_all
from digest.web import archive, clicks, editor_pages, reports_pages, sends_pages
from digest.web.access import OFF, Guard
from digest.web.forms import form_fields, read_body
from digest.web.pages import READER_HEADERS, Pages
from digest.web.send_runs import SendRuns
from digest.web.writer import Batched, Writer

log = logging.getLogger("digest.web")

#: A one-click POST is 26 bytes; a SendGrid batch is far below this.
MAX_FORM_BYTES = 64 * 1024
MAX_WEBHOOK_BYTES = 10 * 1024 * 1024


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The app for one newsroom. Opens the store unless given one (then the caller closes it)."""
    owned = store is None
    db = jobs.open_store(settings) if store is None else store
    pages = Pages(settings)
    secret = settings.secret_key
    try:
        verifier: Verifier | None = Verifier.from_env(settings.env)
        unusable = ""
    except WebhookNotConfigured as exc:
        verifier, unusable = None, str(exc)
        log.warning("sendgrid webhook off: %s", unusable)
    guard = Guard(settings, pages)
    if not guard.on:
        log.warning(OFF)
    # The public endpoints' writes, one at a time; unsubscribes that arrive together are
    # written together (web/writer.py).
    writer = Writer()
    # The sends operators start from the sends pages, each in a thread (send_runs.py).
    runs = SendRuns(settings, db)
    leaving: Batched[tuple[str, str], Unsubscribed] = Batched(writer, partial(unsubscribe_all, db))

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
        body = await read_body(request, MAX_FORM_BYTES)
        fields = form_fields(request.headers.get("content-type", ""), body or b"")
        source = "one-click" if fields.get("List-Unsubscribe") == ["One-Click"] else "web"
        done = await leaving.submit((email, source))
        if done.now:
            log.info("unsubscribed %s (%s)", masked(email), source)
        return pages.render("unsubscribe_done.html.j2", address=masked(email), now=done.now)

    async def picture(request: Request) -> Response:
        # The pictures every email links to (digest.media): public, named by their
        # bytes, so cached for good; only names the publisher makes are served.
        found = media.published(settings, request.path_params["name"])
        if found is None:
            return PlainTextResponse("no such picture", status_code=404, headers=READER_HEADERS)
        path, content_type = found
        return FileResponse(
            path,
            media_type=content_type,
            headers={
                "Cache-Control": "public, max-age=31536000, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def sendgrid_webhook(request: Request) -> Response:
        if verifier is None:
            return PlainTextResponse(unusable, status_code=503)
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        if body is None:
            return PlainTextResponse(f"body over {MAX_WEBHOOK_BYTES} bytes", status_code=413)
        read: Callable[[], sendgrid_events.Received] = partial(
            sendgrid_events.read,
            verifier,
            body,
            request.headers.get(sendgrid_events.SIGNATURE_HEADER),
            request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
            asm_group_id=settings.delivery.asm_group_id,
        )
        try:
            received = await run_in_threadpool(read)
            report = await writer.run(partial(sendgrid_events.write, db, received))
        except SignatureRejected as exc:
            log.warning("sendgrid webhook: refused: %s", exc)
            return PlainTextResponse(str(exc), status_code=403)
        except MalformedEvents as exc:
            log.warning("sendgrid webhook: signed but malformed: %s", exc)
            return PlainTextResponse(str(exc), status_code=400)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            # Not 2xx, so SendGrid posts these events again later (for up to 24 hours,
            # "Event Webhook" troubleshooting); both steps are safe to repeat.
            log.warning("sendgrid webhook: the database is unavailable (%s); 503", reason(exc))
            return PlainTextResponse(
                "the database is unavailable; post again later", status_code=503
            )
        return JSONResponse(asdict(report))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The sends this app was running when it stopped go on (send_runs.py), without
        # holding up the start: a dead run's lease may take a while to lapse.
        restarting = threading.Thread(target=runs.resume_interrupted, daemon=True)
        restarting.start()
        try:
            yield
        finally:
            # The runs finish their batches in flight and pause, to go on at the next start.
            await run_in_threadpool(runs.close)
            restarting.join(5)
            if owned:
                db.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/unsubscribe", preview, methods=["GET"]),
            Route("/unsubscribe/{token}", confirm, methods=["GET"]),
            Route("/unsubscribe/{token}", leave, methods=["POST"]),
            *archive.routes(settings, db, pages),
            Route("/media/{name}", picture, methods=["GET"]),
            Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
            *clicks.routes(settings, db, pages, writer),
            *editor_pages.routes(settings, db, pages, guard),
            *reports_pages.routes(settings, db, pages, guard),
            *sends_pages.routes(settings, db, pages, guard, runs),
        ],
        lifespan=lifespan,
    )
