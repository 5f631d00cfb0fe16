"""The operators' pages: what went out, read from the send ledger, and the buttons that
start, pause and resume a send.

GET  /sends                 every send, newest first, and the approved editions not sent
GET  /sends/{name}          one send as `digest sends NAME` shows it, who did what to it,
                            and the actions the ledger allows now; for an approved edition
                            with no send yet, the dry run's figures and a button to confirm
GET  /sends/{name}/progress the send's figures as JSON, which the page's script reads
                            while it runs (without JavaScript, the page refreshes itself)
POST /sends/{name}          `action` start | pause | resume | resend in doubt, then 303 back
                            with a note shown once (notes.py)
GET  /sends.js              that script

Behind the editors' login (access.py), with its form token and Origin check. The page
only asks: control.pause and SendRuns.begin (send_runs.py) put the question to the
ledger, which refuses whatever would start a send twice or mail anyone twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from digest import jobs
from digest.config import DEFAULT_TEMPLATES, Settings
from digest.errors import DigestError, NotFoundError
from digest.send import control
from digest.send.ledger import SendReport, report
from digest.store import Store
from digest.store.actions import SendAction, actions_of
from digest.web.access import NEWSROOM_HEADERS, SEND_PAGE_HEADERS, Editor, Guard, newsroom_page
from digest.web.notes import Notes
from digest.web.pages import Pages
from digest.web.send_runs import ACTIONS, RESEND, RESUME, SendRuns

log = logging.getLogger("digest.web")

#: Batch states in the order a batch goes through them; "sending" is shown as in doubt
#: once nothing is sending any more (see digest.send.ledger).
BATCH_STATES = ("sent", "pending", "sending", "failed")
PAUSE = "pause"
MAX_FORM_BYTES = 4096
SCRIPT = DEFAULT_TEMPLATES / "web" / "sends.js"


@dataclass
class SendView:
    """One send as the ledger has it, and the batches an operator must look at."""

    report: SendReport
    created_at: datetime
    updated_at: datetime
    batches: dict[str, tuple[int, int]]  # state -> (batches, recipients)
    in_doubt: list[Any] = field(default_factory=list)  # batch rows left in `sending`
    failed: list[Any] = field(default_factory=list)  # batch rows that failed, with reasons
    refusals: list[Any] = field(default_factory=list)  # (number, error): sent, some refused
    driver: str = ""  # who runs it from the web now ("" = no web run)
    actions: list[SendAction] = field(default_factory=list)

    @property
    def allowed(self) -> list[str]:
        """The buttons to show: what the ledger would allow now (it checks again on POST)."""
        r = self.report
        if self.driver:
            return [PAUSE] if r.state in ("sending", "incomplete") else []
        shown = []
        if r.state in ("sending", "incomplete") and r.pending:
            shown.append(PAUSE)
        if r.pending + r.failed and r.state != "done":
            shown.append(RESUME)
        if r.in_doubt and r.state in ("paused", "incomplete", "stopped"):
            shown.append(RESEND)
        return shown

    @property
    def resume(self) -> str:
        """The command that finishes what is left of the send ("" = nothing left)."""
        r = self.report
        return f"digest send {r.edition} --resume" if r.pending or r.failed else ""

    @property
    def retry_in_doubt(self) -> str:
        r = self.report
        return f"digest send {r.edition} --resume --retry-in-doubt" if r.in_doubt else ""


def _send_view(store: Store, row: Any, *, detail: bool) -> SendView:
    view = SendView(
        report=report(store, row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
        batches=store.sends.batch_states(row.id),
        driver=control.driver(store, row.edition).rpartition("|")[2],
    )
    if detail:
        problems = store.sends.failed_batches(row.id)
        view.in_doubt = [b for b in problems if b.state == "sending"]
        view.failed = [b for b in problems if b.state == "failed"]
        view.refusals = list(store.sends.refusals(row.id))
        view.actions = list(reversed(actions_of(store, row.edition)))
    return view


def list_sends(store: Store) -> list[SendView]:
    # list_sends orders by edition name, a date: newest first.
    return [_send_view(store, row, detail=False) for row in store.sends.list_sends()]


def one_send(store: Store, name: str) -> SendView | None:
    row = store.sends.get_send(name)
    return None if row is None else _send_view(store, row, detail=True)


def progress(store: Store, name: str) -> dict[str, Any]:
    """What the page's script shows while a send runs."""
    row = store.sends.get_send(name)
    holder = control.driver(store, name).rpartition("|")[2]
    if row is None:
        return {"edition": name, "state": "starting" if holder else "", "running": bool(holder)}
    r = report(store, row.id)
    figures = {k: v for k, v in asdict(r).items() if isinstance(v, int | str)}
    return {**figures, "running": bool(holder), "driver": holder}


def routes(
    settings: Settings, store: Store, pages: Pages, guard: Guard, runs: SendRuns
) -> list[Route]:
    zone = settings.newsroom.zone
    notes = Notes(guard)

    def local_time(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def page(
        request: Request, template: str, who: Editor, status: int = 200, **values: Any
    ) -> Response:
        return newsroom_page(
            pages, request, template, who, status,
            headers=SEND_PAGE_HEADERS, states=BATCH_STATES, local_time=local_time, **values,
        )  # fmt: skip

    def message(request: Request, who: Editor, status: int, title: str, *lines: str) -> Response:
        return page(
            request, "newsroom_message.html.j2", who, status=status, title=title, lines=list(lines)
        )

    async def every_send(request: Request, who: Editor) -> Response:
        views = await run_in_threadpool(list_sends, store)
        unsent = await run_in_threadpool(store.editions.edition_entries, sent=False)
        ready = [e for e in unsent if e.status == "approved"]
        return page(request, "sends.html.j2", who, sends=views, ready=ready)

    def unsent(name: str) -> dict[str, Any] | None:
        """An approved edition with no send: the dry run's figures (None: no edition)."""
        try:
            edition = jobs.load_edition(store, name)
        except NotFoundError:
            return None
        found: dict[str, Any] = {"edition": edition, "starting": False, "dry": None, "problem": ""}
        if control.driver(store, name):
            found["starting"] = True
        elif edition.status == "approved":
            try:
                found["dry"] = jobs.dry_run(settings, store, name)
            except DigestError as exc:
                found["problem"] = str(exc)
        return found

    async def send(request: Request, who: Editor) -> Response:
        name = request.path_params["name"]
        flash, _ = notes.take(request, name)
        view = await run_in_threadpool(one_send, store, name)
        if view is not None:
            answer = page(request, "send.html.j2", who, send=view, flash=flash)
            return notes.clear(request, answer)
        found = await run_in_threadpool(unsent, name)
        if found is None:
            return message(
                request, who, 404, "No such send",
                f"Edition {name!r} has not been sent: there is no send for it.",
                "Every send is listed on the sends page.",
            )  # fmt: skip
        answer = page(request, "send_start.html.j2", who, name=name, flash=flash, **found)
        return notes.clear(request, answer)

    async def figures(request: Request, _who: Editor) -> Response:
        found = await run_in_threadpool(progress, store, request.path_params["name"])
        return JSONResponse(found, headers=NEWSROOM_HEADERS)

    async def act(request: Request, who: Editor) -> Response:
        name = request.path_params["name"]
        fields = await guard.read_form(request, who, MAX_FORM_BYTES)
        if isinstance(fields, Response):
            return fields
        action = (fields.get("action") or [""])[0]
        if action not in (PAUSE, *ACTIONS):
            return PlainTextResponse(
                f"unknown action {action!r}; nothing was changed",
                status_code=400,
                headers=NEWSROOM_HEADERS,
            )
        try:
            if action == PAUSE:
                said = await run_in_threadpool(control.pause, store, name, who.name)
            else:
                said = await run_in_threadpool(runs.begin, name, action, who.name)
            kind = "done"
        except DigestError as exc:
            said, kind = str(exc), "error"
        log.info("operator %s on send %s: %s: %s", who.name, name, action, said)
        # Relative: the app may sit under any path of the newsroom's proxy.
        answer = RedirectResponse(name, status_code=303)
        notes.leave(request, answer, name, kind, said, "")
        return answer

    async def script(_request: Request) -> Response:
        return Response(
            SCRIPT.read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route("/sends", guard.protect(every_send), methods=["GET"]),
        Route("/sends.js", script, methods=["GET"]),
        Route("/sends/{name}", guard.protect(send), methods=["GET"]),
        Route("/sends/{name}", guard.protect(act), methods=["POST"]),
        Route("/sends/{name}/progress", guard.protect(figures), methods=["GET"]),
    ]
