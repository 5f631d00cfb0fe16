"""The one-line note after an editor's change ("pinned “…”"), shown once, beside the story.

POST -> 303 -> GET: the POST leaves the note in a short-lived cookie, and the GET that
shows it clears it in the same answer, so reloading the page, or coming back to it
later, shows it no more, and the address keeps nothing of it (an address is copied,
bookmarked and kept in the history; a note in it would be shown again each time).

The cookie is signed with the newsroom's secret key (Guard.sign): another site cannot
put words on these pages. It names the edition it is about, and is sent only to the
editor's pages: no Path attribute, so the browser scopes it to the folder of the page
that set it (RFC 6265 section 5.1.4), whatever path the newsroom's proxy serves the app
under; HttpOnly and SameSite=Strict, and Secure when the page came over HTTPS.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from starlette.requests import Request
from starlette.responses import Response

from digest.models import Story
from digest.web.access import Guard

COOKIE = "digest_note"
#: Long enough for the redirect that follows the POST, short enough to be forgotten.
SECONDS = 120
_LONGEST = 600
#: Where on the page a note may belong: a story's item, or a card.
_ANCHOR = re.compile(r"story-[0-9]{1,18}|edition|test")


def anchor(story: Story) -> str:
    """The id of a story's item on the editor's page ("" for a story not stored yet)."""
    return f"story-{story.id}" if story.id is not None else ""


class Notes:
    """Leaves a note for the page a change goes back to, and takes it once."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    @staticmethod
    def is_anchor(value: str) -> bool:
        return bool(_ANCHOR.fullmatch(value))

    def _seal(self, payload: str) -> str:
        return self._guard.sign("note\0" + payload)

    def leave(
        self, request: Request, answer: Response, edition: str, kind: str, text: str, at: str
    ) -> None:
        text = " ".join(text.split())[:_LONGEST]
        payload = base64.urlsafe_b64encode(
            json.dumps([edition, kind, text, at], ensure_ascii=False).encode()
        ).decode()
        payload = payload.rstrip("=")  # "=" would make the cookie a quoted string
        self._set(request, answer, f"{payload}.{self._seal(payload)}", SECONDS)

    def take(self, request: Request, edition: str) -> tuple[tuple[str, str] | None, str]:
        """((kind, text), where) of the note left for this edition's page, or (None, "")."""
        payload, _, seal = request.cookies.get(COOKIE, "").partition(".")
        if not payload or not self._guard.signed("note\0" + payload, seal):
            return None, ""
        try:
            decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            name, kind, text, at = json.loads(decoded)
        except (binascii.Error, ValueError, TypeError):
            return None, ""
        if name != edition or kind not in ("done", "error") or not isinstance(text, str):
            return None, ""
        return (kind, text), at if isinstance(at, str) and self.is_anchor(at) else ""

    def clear(self, request: Request, answer: Response) -> Response:
        """The page's answer, clearing the note it showed (or a stale one): once only."""
        if COOKIE in request.cookies:
            self._set(request, answer, "", 0)
        return answer

    @staticmethod
    def _set(request: Request, answer: Response, value: str, seconds: int) -> None:
        answer.set_cookie(
            COOKIE,
            value,
            max_age=seconds,
            path=None,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
