"""Render: Edition -> (HTML, text), once per edition, then check what came out.

Jinja2 (autoescape on) -> MJML -> mjml-python -> premailer for the HTML;
Jinja2 (autoescape off) for the text part. Per-recipient values are tokens
(TOKENS) that the send stage fills, so nothing here runs per recipient.
"""

from __future__ import annotations

import logging
import re
import textwrap
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from lxml import html as lxml_html
from mjml import mjml2html
from premailer import Premailer

from digest.collect.urls import is_safe_link
from digest.config import Settings
from digest.errors import DigestError
from digest.models import Edition, Pick, RenderedEdition

log = logging.getLogger("digest.render")

#: Substitution tokens, one per per-recipient value. The HTML and text parts get
#: different keys because a value is HTML-escaped in one and not in the other
#: (SendGrid applies every substitution to every part).
TOKENS = {
    "greeting": "%%greeting%%",
    "unsubscribe_url": "%%unsubscribe_url%%",
}
TEXT_TOKENS = {"greeting": "%%greeting_text%%", "unsubscribe_url": "%%unsubscribe_url%%"}

#: Gmail clips messages whose HTML is over about 102 KB and hides the footer,
#: unsubscribe link included.
GMAIL_CLIP_BYTES = 102 * 1024
_IMAGE_SCHEMES = ("http", "https", "file")
_LINK_OK = re.compile(r"^(https?:|mailto:|%%[a-z_]+%%$)", re.IGNORECASE)


class RenderError(DigestError):
    """The template or its output is broken: nothing is sent."""


def _wrap(value: str, width: int = 76, indent: str = "") -> str:
    return textwrap.fill(
        value, width=width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def _environment(templates: Path, autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters["wrap"] = _wrap
    return env


def _safe_pick(pick: Pick) -> Pick | None:
    """A pick fit for an email, or None: only http(s) links, only web or local images."""
    story = pick.story
    if not is_safe_link(story.url):
        log.warning(
            "edition: story %r has an unsafe link %r; left out", story.title[:60], story.url[:60]
        )
        return None
    if story.image_url and urlsplit(story.image_url).scheme.lower() not in _IMAGE_SCHEMES:
        log.warning("edition: story %r has an unsafe image URL; image left out", story.title[:60])
        story = replace(story, image_url="")
    return replace(pick, story=story)


def safe_edition(edition: Edition) -> Edition:
    lead = _safe_pick(edition.lead) if edition.lead else None
    more = [p for p in (_safe_pick(p) for p in edition.more) if p]
    most_read = [p for p in (_safe_pick(p) for p in edition.most_read) if p]
    if lead is None and more:
        lead, more = replace(more[0], slot="lead"), more[1:]
    return replace(edition, lead=lead, more=more, most_read=most_read)


def _context(settings: Settings, edition: Edition, tokens: dict[str, str]) -> dict[str, Any]:
    newsroom = settings.newsroom
    day = date.fromisoformat(edition.name)
    return {
        "edition": edition,
        "newsroom": {
            "name": newsroom.name,
            "website": newsroom.website,
            "website_host": urlsplit(newsroom.website).netloc or newsroom.website,
            "postal_address": newsroom.postal_address,
            "logo_url": newsroom.logo_url,
            "brand_color": newsroom.brand_color,
        },
        "edition_date": f"{day:%A, %B} {day.day}, {day.year}",
        "view_url": f"{settings.base_url}/editions/{edition.name}",
        "tokens": tokens,
    }


def check_html(html: str) -> list[str]:
    """Post-render checks. Returns warnings; raises RenderError for what must never be sent."""
    doc = lxml_html.fromstring(html)
    if doc.xpath("//script") or doc.xpath("//iframe") or doc.xpath("//object"):
        raise RenderError("rendered HTML contains <script>, <iframe> or <object>; not sent")
    for element in doc.xpath("//*[@href]"):
        href = element.get("href", "").strip()
        if not _LINK_OK.match(href):
            raise RenderError(
                f"rendered HTML has a link that is not http(s) or mailto: {href[:80]!r}"
            )
    for element in doc.xpath("//*[@src]"):
        if urlsplit(element.get("src", "")).scheme.lower() not in _IMAGE_SCHEMES:
            raise RenderError(
                f"rendered HTML has an unsafe image source: {element.get('src')[:80]!r}"
            )
    for attributes in doc.xpath("//@*"):
        if attributes.attrname.lower().startswith("on"):
            raise RenderError("rendered HTML has an event-handler attribute; not sent")
    warnings = []
    if TOKENS["unsubscribe_url"] not in html:
        raise RenderError("the template has no unsubscribe link (tokens.unsubscribe_url)")
    size = len(html.encode())
    if size > GMAIL_CLIP_BYTES:
        warnings.append(
            f"HTML is {size // 1024} KB; Gmail clips messages over 102 KB and hides the footer"
        )
    return warnings


def render(settings: Settings, edition: Edition) -> RenderedEdition:
    """Render the edition once. Raises RenderError if the output fails its checks."""
    edition = safe_edition(edition)
    templates = settings.templates_dir
    try:
        mjml_source = (
            _environment(templates, autoescape=True)
            .get_template("digest.mjml.j2")
            .render(_context(settings, edition, TOKENS))
        )
        text = (
            _environment(templates, autoescape=False)
            .get_template("digest.txt.j2")
            .render(_context(settings, edition, TEXT_TOKENS))
        )
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', '') or templates}:{getattr(exc, 'lineno', '') or ''}"
        raise RenderError(f"{where}: template error: {exc}") from None
    try:
        # fonts={}: MJML would otherwise add Google Fonts links for known families.
        raw_html = mjml2html(mjml_source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises plain exceptions from Rust
        raise RenderError(f"{templates / 'digest.mjml.j2'}: MJML error: {exc}") from None
    # premailer's defaults would fetch remote CSS, drop the <style> blocks that
    # hold the media queries and strip !important that those queries need.
    html = Premailer(
        raw_html,
        allow_network=False,
        keep_style_tags=True,
        strip_important=False,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    if not html.lstrip().lower().startswith("<!doctype"):
        html = "<!doctype html>\n" + html
    warnings = check_html(html)
    for warning in warnings:
        log.warning("edition %s: %s", edition.name, warning)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return RenderedEdition(
        name=edition.name,
        subject=edition.subject,
        preheader=edition.preheader,
        html=html,
        text=text,
        warnings=warnings,
    )


def write(
    rendered: RenderedEdition, out_dir: Path, fill: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """Write EDITION.html and EDITION.txt, with tokens filled for a preview reader."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fill = fill or {}
    html, text = rendered.html, rendered.text
    for token, value in fill.items():
        html = html.replace(token, value)
        text = text.replace(token, value)
    html_path = out_dir / f"{rendered.name}.html"
    text_path = out_dir / f"{rendered.name}.txt"
    html_path.write_text(html, encoding="utf-8")
    text_path.write_text(text, encoding="utf-8")
    return html_path, text_path
