"""The HTML pages, from templates/web (autoescaped), in the newsroom's name and colour."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from digest.config import DEFAULT_TEMPLATES, Settings

#: The readers' pages carry a token that can unsubscribe someone: no cache keeps them,
#: no Referer takes the URL to the newsroom's site, no script runs, no frame holds them.
READER_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")


def root_of(path: str) -> str:
    """The relative link from the page at `path` to the app's root ("/sends" -> "./",
    "/editor/2025-12-05" -> "../"): links keep working when a proxy serves the app
    under a path of its own."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


class Pages:
    """Renders templates/web/*.html.j2 with the newsroom's name, colour and contact."""

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

    def render(
        self,
        template: str,
        /,
        status: int = 200,
        headers: Mapping[str, str] = READER_HEADERS,
        **values: Any,
    ) -> HTMLResponse:
        html = self._env.get_template(template).render(**self._common, **values)
        return HTMLResponse(html, status_code=status, headers=dict(headers))
