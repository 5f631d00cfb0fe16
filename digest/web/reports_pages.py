"""The editions' reports, for the newsroom: read-only, behind the editor login.

GET /reports            every sent edition, newest first, with its click and open rates
GET /reports/{edition}  one edition as `digest report EDITION` shows it, with its charts

The figures come from digest.readership (counted by the database); the charts are its
server-side SVG, so the page needs no script and no asset from elsewhere.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import readership
from digest.config import Settings
from digest.store import Store
from digest.web.access import Editor, Guard, newsroom_page
from digest.web.pages import Pages


def routes(_settings: Settings, store: Store, pages: Pages, guard: Guard) -> list[Route]:
    def page(
        request: Request, template: str, who: Editor, status: int = 200, **values: Any
    ) -> Response:
        return newsroom_page(pages, request, template, who, status, **values)

    async def every_report(request: Request, who: Editor) -> Response:
        editions = await run_in_threadpool(readership.reports_list, store)
        return page(request, "reports.html.j2", who, editions=editions)

    async def one_report(request: Request, who: Editor) -> Response:
        name = request.path_params["edition"]
        figures = await run_in_threadpool(readership.report, store, name)
        if figures is None:
            return page(
                request,
                "newsroom_message.html.j2",
                who,
                status=404,
                title="No such report",
                lines=[
                    f"Edition {name!r} has not been sent, so there is no report for it.",
                    "Every sent edition is listed on the reports page.",
                ],
            )
        return page(
            request,
            "report.html.j2",
            who,
            r=figures,
            slot_names=readership.SLOT_NAMES,
            places_chart=readership.places_chart(figures),
            trend_chart=readership.trend_chart(figures),
        )

    return [
        Route("/reports", guard.protect(every_report), methods=["GET"]),
        Route("/reports/{edition}", guard.protect(one_report), methods=["GET"]),
    ]
