"""Who may open the newsroom's own pages (/editor, /sends), and the checks on their forms.

HTTP Basic auth (RFC 7617) against DIGEST_EDITOR_PASSWORD, from the environment only;
the user name is free text and is who the change record names ("anna"). With no
password set the pages are off and say how to turn them on.

A browser sends Basic credentials with every request to the site, also with a form
that another site makes it post (cross-site request forgery). So every form that
changes something carries a token only our own pages hold (an HMAC of the newsroom's
secret key and the user name), and a POST whose Origin header names another site is
refused before the token is even looked at (OWASP CSRF Prevention Cheat Sheet:
"Verifying Origin With Standard Headers", then "Synchronizer Token Pattern").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest.config import Settings
from digest.web.forms import form_fields, read_body
from digest.web.pages import Pages, root_of

log = logging.getLogger("digest.web")

PASSWORD_VARIABLE = "DIGEST_EDITOR_PASSWORD"
OFF = f"editor pages are off: set {PASSWORD_VARIABLE} in the environment of `digest web`"
#: The form field that carries the token.
TOKEN_FIELD = "csrf"
#: charset: browsers send the user name and password as UTF-8 (RFC 7617 section 2.1).
_CHALLENGE = 'Basic realm="newsroom digest", charset="UTF-8"'
_LONGEST_NAME = 60
#: Wrong passwords one client address may give in FAILURE_WINDOW seconds; then it is
#: refused (429, even with the right password) until the oldest of them is that old.
#: Behind the newsroom's proxy uvicorn takes the address from X-Forwarded-For.
MAX_FAILURES = 20
FAILURE_WINDOW = 900.0
#: Addresses remembered at most (a flood of addresses forgets the oldest).
_REMEMBERED = 10_000

#: Newsroom pages: never cached (they show drafts), framed only by our own pages (the
#: preview), no script at all, forms post only here. Referrer-Policy same-origin and not
#: no-referrer: under no-referrer a browser sends "Origin: null" even with a form posted
#: to its own site (Fetch standard, "append a request Origin header"), and that would be
#: refused as coming from elsewhere.
NEWSROOM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    ),
}
#: A send's page: the same, and its own small script (/sends.js), which reads the
#: send's progress from this app and nothing else.
SEND_PAGE_HEADERS = {
    **NEWSROOM_HEADERS,
    "Content-Security-Policy": NEWSROOM_HEADERS["Content-Security-Policy"]
    + "; script-src 'self'; connect-src 'self'",
}
#: The preview is the newsroom's own email, but its stories come from feeds: `sandbox`
#: gives it an origin of its own and no script, whoever opens it, framed or not.
PREVIEW_HEADERS = {
    **NEWSROOM_HEADERS,
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
}


@dataclass(frozen=True)
class Editor:
    """Someone who gave the editor password: their name, and the token their forms carry."""

    name: str
    form_token: str


Handler = Callable[[Request, Editor], Awaitable[Response]]


def _refusal(status: int, line: str, headers: Mapping[str, str] | None = None) -> Response:
    return PlainTextResponse(
        line, status_code=status, headers={**NEWSROOM_HEADERS, **(headers or {})}
    )


def _credentials(header: str) -> tuple[str, bytes] | None:
    """(user name, password) from an Authorization: Basic header, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        name = user.decode("utf-8")
    except UnicodeDecodeError:
        name = user.decode("latin-1")
    # It goes into the change record and the log: one printable line.
    name = " ".join("".join(c for c in name if c.isprintable()).split())
    return name[:_LONGEST_NAME], password


class Guard:
    """Lets the newsroom in, and keeps the rest of the web out."""

    def __init__(self, settings: Settings, pages: Pages) -> None:
        self._password = settings.env.get(PASSWORD_VARIABLE, "").encode("utf-8")
        self._key = settings.secret_key
        self._pages = pages
        # The app's own address, as readers' links name it: a proxy that does not pass
        # the Host header on still has its forms accepted.
        self._own_host = urlsplit(settings.base_url).netloc.lower()
        # Per client address, when its recent wrong passwords were given (the app runs
        # its handlers on one event loop, so no lock is needed).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.clock: Callable[[], float] = time.monotonic

    def _locked_for(self, address: str) -> float:
        """Seconds this address must still wait, 0 if it may try a password."""
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        horizon = self.clock() - FAILURE_WINDOW
        while failures and failures[0] <= horizon:
            failures.popleft()
        if len(failures) < MAX_FAILURES:
            return 0.0
        return failures[0] - horizon

    def _failed(self, address: str) -> None:
        failures = self._failures.pop(address, None) or deque(maxlen=MAX_FAILURES)
        failures.append(self.clock())
        self._failures[address] = failures
        while len(self._failures) > _REMEMBERED:
            self._failures.popitem(last=False)

    @property
    def on(self) -> bool:
        return bool(self._password)

    def _token(self, name: str, purpose: bytes) -> str:
        return hmac.new(self._key, purpose + b"\0" + name.encode(), hashlib.sha256).hexdigest()

    def sign(self, text: str) -> str:
        """A short signature of what this app puts in a link, so a link made elsewhere
        cannot put words on the newsroom's pages (a flash after a change) or fetch a
        file the preview does not show (a preview's picture)."""
        return self._token(text, b"editor-flash")[:24]

    def signed(self, text: str, signature: str) -> bool:
        return secrets.compare_digest(self.sign(text).encode(), signature.encode())

    def admit(self, request: Request) -> Editor | Response:
        """The editor making the request, or the answer for someone who is not one."""
        if not self.on:
            return self._pages.render(
                "newsroom_message.html.j2",
                status=503,
                headers=NEWSROOM_HEADERS,
                title="Editor pages are off",
                lines=[OFF + "."],
                who="",
                root=root_of(request.url.path),
            )
        given = _credentials(request.headers.get("authorization", ""))
        if given is None:
            return _refusal(
                401,
                "log in with your name as the user name and the editor password",
                {"WWW-Authenticate": _CHALLENGE},
            )
        name, password = given
        address = request.client.host if request.client else ""
        wait = self._locked_for(address)
        if wait:
            log.warning(
                "editor pages: %s is refused for %.0f s after wrong passwords", address, wait
            )
            return _refusal(
                429,
                f"too many wrong passwords from your address; try again in "
                f"{int(wait // 60) + 1} minutes",
                {"Retry-After": str(int(wait) + 1)},
            )
        if not secrets.compare_digest(password, self._password):
            self._failed(address)
            log.warning("editor pages: wrong password given by %r from %s", name, address)
            return _refusal(
                401, "wrong password: try again, or ask who runs `digest web`",
                {"WWW-Authenticate": _CHALLENGE},
            )  # fmt: skip
        if not name:
            return _refusal(
                401,
                "give your name as the user name: the change record says who did what",
                {"WWW-Authenticate": _CHALLENGE},
            )
        return Editor(name, self._token(name, b"editor-form"))

    def check_form(
        self, request: Request, editor: Editor, fields: Mapping[str, list[str]]
    ) -> Response | None:
        """None when a POST may change something; else the 403 that says why not."""
        origin = request.headers.get("origin")
        if origin is not None:
            # "null" (a sandboxed frame, a privacy redirect) names no site: refused too.
            host = urlsplit(origin).netloc.lower()
            if not host or host not in {request.headers.get("host", "").lower(), self._own_host}:
                return _refusal(
                    403, "refused: the form was posted from another site; nothing was changed"
                )
        given = (fields.get(TOKEN_FIELD) or [""])[0]
        if not secrets.compare_digest(given.encode(), editor.form_token.encode()):
            return _refusal(
                403,
                "refused: the form carries no valid editor token (reload the editor page and "
                "try again); nothing was changed",
            )
        return None

    async def read_form(
        self, request: Request, editor: Editor, limit: int
    ) -> dict[str, list[str]] | Response:
        """A POST's form fields, once its body fits in `limit` bytes and check_form lets
        it through; else the response that refuses it (413, 403)."""
        body = await read_body(request, limit)
        if body is None:
            return PlainTextResponse(
                f"form over {limit} bytes", status_code=413, headers=NEWSROOM_HEADERS
            )
        fields = form_fields(request.headers.get("content-type", ""), body)
        refused = self.check_form(request, editor, fields)
        return fields if refused is None else refused

    def protect(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint for a handler that needs an editor: the request is admitted first."""

        async def endpoint(request: Request) -> Response:
            admitted = self.admit(request)
            if isinstance(admitted, Response):
                return admitted
            return await handler(request, admitted)

        return endpoint


def newsroom_page(
    pages: Pages,
    request: Request,
    template: str,
    who: Editor,
    status: int = 200,
    *,
    headers: Mapping[str, str] = NEWSROOM_HEADERS,
    **values: Any,
) -> Response:
    """One of the newsroom's own pages, for an admitted editor: its headers, the link to
    the app's root, who is signed in and the token its forms carry."""
    return pages.render(
        template,
        status=status,
        headers=headers,
        root=root_of(request.url.path),
        who=who.name,
        csrf_field=TOKEN_FIELD,
        csrf=who.form_token,
        **values,
    )
