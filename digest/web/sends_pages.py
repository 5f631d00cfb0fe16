"""The operators' pages: what went out, read from the send ledger. Read-only.

GET /sends          every send, newest first: state, recipients per batch state
GET /sends/{name}   one send as `digest sends NAME` shows it: failures with reasons,
                    refusals, in-doubt batches, and the command that resumes it

Sends are started and resumed from the command line only (`digest send`), where the
operator sees the progress and can stop it; a button here could start a send twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.config import Settings
from digest.send.ledger import SendReport, report
from digest.store import Store
from digest.web.access import Editor, Guard, newsroom_page
from digest.web.pages import Pages

#: Batch states in the order a batch goes through them; "sending" is shown as in doubt
#: once nothing is sending any more (see digest.send.ledger).
BATCH_STATES = ("sent", "pending", "sending", "failed")


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
    )
    if detail:
        problems = store.sends.failed_batches(row.id)
        view.in_doubt = [b for b in problems if b.state == "sending"]
        view.failed = [b for b in problems if b.state == "failed"]
        view.refusals = list(store.sends.refusals(row.id))
    return view


def list_sends(store: Store) -> list[SendView]:
    # list_sends orders by edition name, a date: newest first.
    return [_send_view(store, row, detail=False) for row in store.sends.list_sends()]


def one_send(store: Store, name: str) -> SendView | None:
    row = store.sends.get_send(name)
    return None if row is None else _send_view(store, row, detail=True)


def routes(settings: Settings, store: Store, pages: Pages, guard: Guard) -> list[Route]:
    zone = settings.newsroom.zone

    def local_time(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def page(
        request: Request, template: str, who: Editor, status: int = 200, **values: Any
    ) -> Response:
        return newsroom_page(
            pages, request, template, who, status,
            states=BATCH_STATES, local_time=local_time, **values,
        )  # fmt: skip

    async def every_send(request: Request, who: Editor) -> Response:
        views = await run_in_threadpool(list_sends, store)
        return page(request, "sends.html.j2", who, sends=views)

    async def send(request: Request, who: Editor) -> Response:
        name = request.path_params["name"]
        view = await run_in_threadpool(one_send, store, name)
        if view is None:
            return page(
                request,
                "newsroom_message.html.j2",
                who,
                status=404,
                title="No such send",
                lines=[
                    f"Edition {name!r} has not been sent: there is no send for it.",
                    "Every send is listed on the sends page.",
                ],
            )
        return page(request, "send.html.j2", who, send=view)

    return [
        Route("/sends", guard.protect(every_send), methods=["GET"]),
        Route("/sends/{name}", guard.protect(send), methods=["GET"]),
    ]
