"""The editor's pages: the draft beside its preview, with a button for every change.

GET /editor                  -> 303 to the next edition (jobs.upcoming)
GET /editor/editions         every edition: upcoming, not sent, sent (to move between them)
GET /editor/{name}           the edition: slots, scores and why, the change record
GET /editor/{name}/preview   the whole edition's email HTML, as a preview (framed)
POST /editor/{name}          one change (`action`, `ref`), then 303 back to the story
                             acted on (`#story-ID`), with a note shown once (notes.py)

Every change is made by digest.editor (or digest.jobs for a draft or a test copy):
these pages only show what it says. The forms work without JavaScript.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, cast

from email_validator import EmailNotValidError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from digest import copies, editor, jobs
from digest.collect.urls import is_safe_link
from digest.config import Settings
from digest.errors import DigestError, NotFoundError
from digest.rank import WEIGHTS
from digest.send.subjects import set_test
from digest.store import Store
from digest.store.subjects import subject_test
from digest.subscribers import normalise_email
from digest.web.access import NEWSROOM_HEADERS, PREVIEW_HEADERS, Editor, Guard, newsroom_page
from digest.web.notes import Notes, anchor
from digest.web.pages import Pages

log = logging.getLogger("digest.web")

#: A form of these pages is a few hundred bytes; a subject is at most 150 characters
#: (a note may need more: see form_bytes).
MAX_FORM_BYTES = 16 * 1024
#: The preview's phone width: the iPhone SE/mini's CSS width, the narrowest in common use.
PHONE_WIDTH = 375
#: What the page's buttons may ask for besides editor.ACTIONS.
OTHER_ACTIONS = ("approve", "withdraw", "test", "draft", "subject_test")
#: What an inbox shows of the preheader after the subject: some 90 characters on a
#: phone, two lines under the subject (a desktop inbox shows what fits its one line).
INBOX_PREHEADER = 90
#: Sent editions the editors' list shows; /sends lists every send.
LISTED_SENT = 60


def _day(name: str) -> date | None:
    try:
        return date.fromisoformat(name) if len(name) == 10 else None
    except ValueError:
        return None


def _field(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0]


def _width(value: str) -> int | None:
    return PHONE_WIDTH if value == str(PHONE_WIDTH) else None


def _inbox_preheader(text: str) -> str:
    """The preheader as far as an inbox shows it: cut at a word, near INBOX_PREHEADER."""
    text = " ".join(text.split())
    if len(text) <= INBOX_PREHEADER:
        return text
    cut = text[: INBOX_PREHEADER + 1].rsplit(" ", 1)[0] or text[:INBOX_PREHEADER]
    return cut.rstrip(" ,;:.-–—") + "…"


def _neighbours(names: list[str], name: str) -> tuple[str, str]:
    """The editions before and after `name` among `names` ("" = none)."""
    earlier = [n for n in names if n < name]
    later = [n for n in names if n > name]
    return (max(earlier) if earlier else "", min(later) if later else "")


def routes(settings: Settings, store: Store, pages: Pages, guard: Guard) -> list[Route]:
    zone = settings.newsroom.zone
    # A note of note_max_chars characters, each up to 4 bytes of UTF-8 sent as %XX.
    form_bytes = max(MAX_FORM_BYTES, 12 * settings.limits.note_max_chars + 4096)
    notes = Notes(guard)

    def local_time(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    def page(
        request: Request, template: str, who: Editor, status: int = 200, **values: Any
    ) -> Response:
        return newsroom_page(pages, request, template, who, status, **values)

    def not_an_edition(request: Request, who: Editor, name: str) -> Response:
        return page(
            request,
            "newsroom_message.html.j2",
            who,
            status=404,
            title="No such edition",
            lines=[f"{name!r} is not an edition date: editions are named YYYY-MM-DD."],
        )

    def back(
        request: Request, name: str, kind: str, message: str, width: int | None, at: str = ""
    ) -> Response:
        """303 to the edition's page, at the story acted on, with a note shown once."""
        # Relative: the app may sit under any path of the newsroom's proxy.
        where = f"{name}?width={width}" if width else name
        answer = RedirectResponse(where + (f"#{at}" if at else ""), status_code=303)
        notes.leave(request, answer, name, kind, message, at)
        return answer

    async def upcoming(_request: Request, _who: Editor) -> Response:
        return RedirectResponse(f"editor/{jobs.upcoming(settings).isoformat()}", status_code=303)

    async def editions(request: Request, who: Editor) -> Response:
        upcoming = jobs.upcoming(settings).isoformat()
        unsent = await run_in_threadpool(store.editions.edition_entries, sent=False)
        sent = await run_in_threadpool(store.editions.edition_entries, sent=True, limit=LISTED_SENT)
        return page(
            request,
            "editor_editions.html.j2",
            who,
            upcoming=upcoming,
            upcoming_drafted=upcoming in await run_in_threadpool(store.editions.edition_names),
            coming=[e for e in unsent if e.name >= upcoming],
            stale=[e for e in unsent if e.name < upcoming],
            sent=sent,
            listed_sent=LISTED_SENT,
            local_time=local_time,
        )

    async def edition(request: Request, who: Editor) -> Response:
        name = request.path_params["name"]
        if _day(name) is None:
            return not_an_edition(request, who, name)
        flash, flash_at = notes.take(request, name)
        upcoming = jobs.upcoming(settings).isoformat()
        names = await run_in_threadpool(store.editions.edition_names)
        earlier, later = _neighbours([*names, upcoming], name)
        nav = {"earlier": earlier, "later": later, "upcoming": upcoming}
        try:
            view = await run_in_threadpool(editor.view, settings, store, name)
            tested = await run_in_threadpool(subject_test, store, name)
        except NotFoundError:
            answer = page(
                request, "editor_missing.html.j2", who, status=404, name=name, flash=flash, nav=nav
            )
            return notes.clear(request, answer)
        edition = view.edition
        above = [p.story for p in ([edition.lead] if edition.lead else []) + edition.more]
        shown = [
            *above,
            *(p.story for p in edition.related + edition.most_read),
            *view.others,
            *view.dropped,
        ]
        # The note goes beside what it is about, when the page still shows it.
        anchors = {"edition", "test", "related", *(anchor(s) for s in shown)} - {""}
        answer = page(
            request,
            "editor.html.j2",
            who,
            name=name,
            view=view,
            edition=edition,
            read_only=view.has_send,
            pinned={view.overrides.lead, *view.overrides.pinned} - {""},
            flash=flash,
            flash_at=flash_at if flash_at in anchors else "",
            anchor=anchor,
            anchored_above={anchor(s) for s in above},
            nav=nav,
            sender=settings.sender.from_name,
            inbox_preheader=_inbox_preheader(edition.preheader),
            width=_width(request.query_params.get("width", "")),
            phone_width=PHONE_WIDTH,
            weights=WEIGHTS,
            max_subject=editor.MAX_SUBJECT,
            subject_test=tested,
            test_share=settings.subject_tests.share,
            max_note=settings.limits.note_max_chars,
            why={out.story.url: out for out in view.edition.left_out},
            events=list(reversed(view.events)),
            local_time=local_time,
            is_safe_link=is_safe_link,
        )
        return notes.clear(request, answer)

    async def preview(request: Request, _who: Editor) -> Response:
        name = request.path_params["name"]
        if _day(name) is None:
            return PlainTextResponse("no such edition", status_code=404, headers=NEWSROOM_HEADERS)
        try:
            rendered = await run_in_threadpool(jobs.render_edition, settings, store, name)
        except NotFoundError:
            return PlainTextResponse(
                f"no edition {name} yet", status_code=404, headers=NEWSROOM_HEADERS
            )
        # The newsroom's published pictures (digest.media) from this very server, so the
        # preview shows them wherever the editor reaches it, not only at base_url.
        html = copies.preview_html(settings, rendered).replace(
            f'src="{settings.base_url}/media/', 'src="/media/'
        )
        return Response(html, media_type="text/html", headers=PREVIEW_HEADERS)

    def change(name: str, action: str, ref: str, who: str) -> tuple[str, str]:
        """Make the change; (flash, where on the page it belongs). DigestError says why not."""
        if action in editor.ACTIONS:
            asked = editor.Change(cast(editor.Action, action), ref)
            result = editor.edit(settings, store, name, [asked], who)
            return "; ".join(result.actions) or "nothing to change", ""
        if action == "approve":
            approved = editor.approve(settings, store, name, who)
            return f"approved: “{approved.subject}”", ""
        if action == "withdraw":
            editor.withdraw(store, name, who)
            return "approval withdrawn: the edition is a draft again", ""
        if action == "test":
            return send_test(name, ref), "test"
        if action == "subject_test":  # one subject a line; none: no test
            wanted = [line for line in ref.splitlines() if line.strip()]
            test = set_test(store, name, wanted, settings.subject_tests.share)
            if test is None:
                return "no subject test", "edition"
            return f"subject test of {len(test.subjects)} subjects", "edition"
        if action == "draft":
            drafted = editor.draft_if_missing(settings, store, name)
            if drafted is None:
                return f"edition {name} is drafted already", ""
            return f"drafted edition {name}: {len(drafted.picks)} picks", ""
        known = ", ".join((*editor.ACTIONS, *OTHER_ACTIONS))
        raise editor.EditError(f"unknown action {action!r}; one of: {known}")

    def send_test(name: str, address: str) -> str:
        if not address.strip():
            raise editor.EditError("give the address to send the test copy to")
        try:
            email = normalise_email(address)
        except EmailNotValidError as exc:
            raise editor.EditError(f"{address.strip()!r} is not an e-mail address: {exc}") from None
        jobs.send_test(settings, store, name, [email])
        return f"sent a [TEST] copy of {name} to {email}"

    async def post(request: Request, who: Editor) -> Response:
        name = request.path_params["name"]
        fields = await guard.read_form(request, who, form_bytes)
        if isinstance(fields, Response):
            return fields
        if _day(name) is None:
            return not_an_edition(request, who, name)
        action, ref = _field(fields, "action"), _field(fields, "ref")
        width = _width(_field(fields, "width"))
        # Where the form was: the story's item, or a card of the page (checked: it
        # goes into the Location header).
        at = _field(fields, "at")
        at = at if notes.is_anchor(at) else ""
        try:
            said, where = await run_in_threadpool(change, name, action, ref, who.name)
        except DigestError as exc:
            return back(request, name, "error", str(exc), width, "test" if action == "test" else at)
        log.info("editor %s on edition %s: %s", who.name, name, said)
        return back(request, name, "done", said, width, where or at)

    return [
        Route("/editor", guard.protect(upcoming), methods=["GET"]),
        # Before /editor/{name}: "editions" is no edition's name.
        Route("/editor/editions", guard.protect(editions), methods=["GET"]),
        Route("/editor/{name}", guard.protect(edition), methods=["GET"]),
        Route("/editor/{name}", guard.protect(post), methods=["POST"]),
        Route("/editor/{name}/preview", guard.protect(preview), methods=["GET"]),
    ]
