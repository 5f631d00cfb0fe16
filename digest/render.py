"""Render: Edition -> (HTML, text), once per edition, then check what came out.

Jinja2 (autoescape on) -> MJML -> mjml-python -> premailer for the HTML;
Jinja2 (autoescape off) for the text part. Per-recipient values are tokens
(digest.tokens) that the send stage fills, so nothing here runs per recipient; what a
source wrote is made inert first, so it can never become one.

On the way: pictures published (digest.media), story links tagged (digest.campaign) and,
when the newsroom counts clicks itself, sent through its click links (digest.clicks),
the words in the newsroom's language (digest.locale), colours for light and dark
(digest.palette), mjml-python's escaping bug worked around (_mjml_safe), premailer kept
from rewriting pixel widths; then render_checks. docs/email.md says why for each.
"""

from __future__ import annotations

import functools
import logging
import re
import textwrap
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from mjml import mjml2html
from premailer import Premailer

from digest import media, note, tokens as _tokens
from digest.campaign import tag_edition
from digest.clicks import tracked_edition
from digest.collect.urls import is_safe_link
from digest.config import Settings
from digest.locale import Language, language
from digest.models import Edition, Pick, RenderedEdition, Story
from digest.palette import palettes
from digest.render_checks import IMAGE_SCHEMES, RenderError, check_html, check_text
from digest.tokens import Tokens, inert_text, inert_url, new_key

log = logging.getLogger("digest.render")

__all__ = ["RenderError", "check_html", "check_text", "render", "safe_edition", "write"]

_STORY_TEXT = ("title", "dek", "byline", "section", "image_caption", "image_credit", "source")


def _wrap(value: str, width: int = 76, indent: str = "") -> str:
    return textwrap.fill(
        value, width=width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


#: WCAG's usual advice and screen readers' habit (JAWS reads alt text in chunks of 125
#: characters): alt text says what the picture is in a sentence, and the caption, which
#: stays visible under the lead picture, says the rest.
ALT_MAX = 125
#: A sentence ends at . ! ? (or the CJK full stops) followed by a space and a capital,
#: unless the word before is a short abbreviation ("Gov. Dunleavy", "U.S. Army").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[^\W\d_a-z])|(?<=[。！？])")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Z][a-z]{0,3}|(?:[A-Za-z]\.)+[A-Za-z]?)\.$")


def alt_text(story: Story) -> str:
    """The picture's alt text: the first sentence of its caption, or the headline, cut at
    a word (or, in scripts without spaces, a whole character) to at most ALT_MAX."""
    text = " ".join((story.image_caption or story.title).split())
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if not _ABBREVIATION.search(text[start : end.start()]):
            text = text[: end.start()]
            break
    if len(text) <= ALT_MAX:
        return text
    cut = text[: ALT_MAX - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    # Never end between a letter and its combining mark or inside an emoji sequence.
    while cut and (unicodedata.category(cut[-1])[0] == "M" or cut[-1] in "\u200d\ufe0f"):
        cut = cut[:-1]
    return cut.rstrip(" ,;:") + "…"


#: Characters mjml-python (1.4, the Rust MRML underneath) mangles in attribute values: it
#: writes them with Rust's debug escaping, so alt="Kunéix̱ Hídi" came out as
#: `Kunéix\u{331} Hídi`, and a ZWJ emoji or an RTL mark in an alt, title or href the
#: same way. Found by passing every code point through it: the combining marks, format
#: and control characters, separators other than the space, unassigned and private-use
#: code points, and six Hangul/halfwidth fillers. Text between tags is not touched.
_MJML_MANGLES_EXTRA = frozenset("\u115f\u1160\u3164\uff9e\uff9f\uffa0")


def _mjml_safe(source: str) -> str:
    """The MJML source with every character mjml-python would mangle written as a numeric
    character reference, which it passes through untouched and every HTML parser (lxml in
    premailer, then the mail client) reads back as the character itself."""
    return _NOT_ASCII.sub(_reference_if_mangled, source)


_NOT_ASCII = re.compile(r"[^\x00-\x7e]")


def _reference_if_mangled(match: re.Match[str]) -> str:
    c = match.group()
    if unicodedata.category(c)[0] in "MCZ" or c in _MJML_MANGLES_EXTRA:
        return f"&#x{ord(c):x};"
    return c


class _ReloadingLoader(jinja2.FileSystemLoader):
    """A compiled template is used again while its file holds the same text, and compiled
    again as soon as it does not. Jinja2's own check compares modification times, which
    two writes within one tick of the file system's clock share; reading a few KB of
    template back costs far less than compiling it."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, _mtime_check = super().get_source(environment, template)

        def uptodate() -> bool:
            try:
                with open(filename, encoding=self.encoding) as handle:
                    return handle.read() == source
            except OSError:
                return False

        return source, filename, uptodate


def _environment(templates: Path, autoescape: bool, language: Language) -> jinja2.Environment:
    """The template set's environment, made once per process: it keeps the templates it
    has compiled (compiling took half of a render) and compiles one again when its file
    changes (_ReloadingLoader), so an edited template shows in the next render without
    a restart."""
    return _cached_environment(str(templates), autoescape, language.translations)


@functools.lru_cache(maxsize=16)
def _cached_environment(templates: str, autoescape: bool, translations: Any) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_ReloadingLoader(templates),
        autoescape=autoescape,
        # _() in the templates: gettext from the locale's catalogue (digest.locale).
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        auto_reload=True,
    )
    env.filters["wrap"] = _wrap
    env.filters["alt_text"] = alt_text
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


#: premailer's settings. Its defaults would fetch remote CSS, drop the <style> blocks that
#: hold the media queries and strip !important that those queries need. Nor may it turn
#: inlined CSS into width/height attributes: it rewrote MJML's width="600" on every
#: picture to width="100%" height="auto", and Outlook for Windows sizes a picture by
#: that attribute alone (MJML docs, mj-image; caniemail "width").
INLINER_OPTIONS: dict[str, Any] = {
    "disable_basic_attributes": ["width", "height"],
    "allow_network": False,
    "keep_style_tags": True,
    "strip_important": False,
    "remove_classes": False,
    "disable_validation": True,
    "cssutils_logging_level": logging.CRITICAL,
}


class _Inliner(Premailer):
    """premailer, with what it works out from a style block kept for the next render.

    premailer caches the parsing of a block's CSS (cssutils), but writes every rule's
    declarations back out as text at each transform, a third of its time; the block is
    the templates' own and the same in every render, so that text is kept too, per block
    and per setting it depends on. The rules are tuples of text, given out as new lists.
    """

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], list[Any]]:
        key = (
            css_body,
            ruleset_index,
            self.strip_important,
            self.exclude_pseudoclasses,
            self.include_star_selectors,
            self.disable_validation,
        )
        found = _STYLE_RULES.get(key)
        if found is None:
            if len(_STYLE_RULES) >= 64:
                _STYLE_RULES.clear()
            found = _STYLE_RULES[key] = super()._parse_style_rules(css_body, ruleset_index)
        return list(found[0]), list(found[1])


_STYLE_RULES: dict[tuple[Any, ...], tuple[list[Any], list[Any]]] = {}


def _inert_story(story: Story) -> Story:
    """The story with no token syntax in anything a source wrote (digest.tokens)."""
    changes: dict[str, str] = {
        name: inert_text(getattr(story, name))
        for name in _STORY_TEXT
        if "%%" in getattr(story, name)
    }
    for name in ("url", "image_url"):
        if "%" in getattr(story, name):
            changes[name] = inert_url(getattr(story, name))
    return replace(story, **changes) if changes else story


def _safe_pick(pick: Pick, pictures: media.Publisher | None) -> Pick | None:
    """A pick fit for an email, or None: only http(s) links, pictures on the web, no token
    syntax from the source."""
    story = _inert_story(pick.story)
    if not is_safe_link(story.url):
        log.warning(
            "edition: story %r has an unsafe link %r; left out", story.title[:60], story.url[:60]
        )
        return None
    if story.image_url and pictures is not None:
        width = media.LEAD_WIDTH if pick.slot == "lead" else media.THUMB_WIDTH
        story = replace(story, image_url=pictures.web_address(story.image_url, width))
    if story.image_url and urlsplit(story.image_url).scheme.lower() not in IMAGE_SCHEMES:
        log.warning("edition: story %r has an unsafe image URL; image left out", story.title[:60])
        story = replace(story, image_url="")
    return replace(pick, story=story)


def safe_edition(edition: Edition, pictures: media.Publisher | None = None) -> Edition:
    """The edition as it may be mailed: unsafe links out, pictures published, content inert."""
    lead = _safe_pick(edition.lead, pictures) if edition.lead else None
    more = [p for p in (_safe_pick(p, pictures) for p in edition.more) if p]
    most_read = [p for p in (_safe_pick(p, pictures) for p in edition.most_read) if p]
    # A related pick names the place of the story it is under ("lead", "more-2"), the
    # story's URL being tagged for the campaign later; under a story left out, it goes.
    places = {p.story.url: f"more-{p.position}" for p in edition.more}
    if edition.lead is not None:
        places[edition.lead.story.url] = "lead"
    related = [
        replace(safe, under=places[p.under])
        for p in edition.related
        if p.under in places and (safe := _safe_pick(p, None)) is not None
    ]
    if lead is None and more:
        lead, more = replace(more[0], slot="lead"), more[1:]
    return replace(
        edition,
        subject=inert_text(edition.subject),
        preheader=inert_text(edition.preheader),
        lead=lead,
        more=more,
        most_read=most_read,
        related=related,
    )


def _context(
    settings: Settings,
    edition: Edition,
    tokens: dict[str, str],
    logo_url: str,
    language: Language,
) -> dict[str, Any]:
    newsroom = settings.newsroom
    light, dark = palettes(newsroom.brand_color)
    paragraphs = note.paragraphs(edition.note)  # inert, http(s) links only (digest.note)
    return {
        "light": light,
        "dark": dark,
        "lang": language.lang,
        "direction": language.direction,
        "start": "right" if language.direction == "rtl" else "left",
        "edition": edition,
        "note": paragraphs,
        "note_text": [note.as_text(p) for p in paragraphs],
        "newsroom": {
            "name": inert_text(newsroom.name),
            "website": inert_url(newsroom.website),
            "website_host": inert_text(urlsplit(newsroom.website).netloc or newsroom.website),
            "postal_address": inert_text(newsroom.postal_address),
            "logo_url": logo_url,
            "brand_color": newsroom.brand_color,
        },
        "edition_date": language.full_date(date.fromisoformat(edition.name)),
        "related": {
            place: [p for p in edition.related if p.under == place]
            for place in dict.fromkeys(p.under for p in edition.related)
        },
        # An archive story's related entry says when it ran ("Dec 3"); the day's do not.
        "ran_on": {
            p.story.url: language.short_date(p.story.published_at.astimezone(newsroom.zone))
            for p in edition.related
            if p.story.published_at < edition.window_start
        },
        "view_url": f"{settings.base_url}/editions/{edition.name}",
        "tokens": tokens,
    }


def render(settings: Settings, edition: Edition) -> RenderedEdition:
    """Render the edition once. Raises RenderError if the output fails its checks."""
    pictures = media.Publisher(settings)
    edition = tag_edition(safe_edition(edition, pictures), settings.campaign)
    logo_url = pictures.web_address(settings.newsroom.logo_url, media.LOGO_WIDTH)
    tokens = Tokens(new_key())
    if settings.click_tracking:  # story links through the newsroom's own click links
        reader = tokens.reader if settings.click_tracking_per_reader else ""
        edition = tracked_edition(edition, settings.base_url, settings.secret_key, reader)
    templates = settings.templates_dir
    words = language(settings.newsroom.locale, templates)
    try:
        mjml_source = (
            _environment(templates, True, words)
            .get_template("digest.mjml.j2")
            .render(_context(settings, edition, tokens.for_html(), logo_url, words))
        )
        text = (
            _environment(templates, False, words)
            .get_template("digest.txt.j2")
            .render(_context(settings, edition, tokens.for_text(), logo_url, words))
        )
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', '') or templates}:{getattr(exc, 'lineno', '') or ''}"
        raise RenderError(f"{where}: template error: {exc}") from None
    try:
        # fonts={}: MJML would otherwise add Google Fonts links for known families.
        raw_html = mjml2html(_mjml_safe(mjml_source), disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises plain exceptions from Rust
        raise RenderError(f"{templates / 'digest.mjml.j2'}: MJML error: {exc}") from None
    html = _Inliner(
        raw_html,
        **INLINER_OPTIONS,
        # Its align= for a floated picture parses every <img>'s style with cssutils,
        # uncached (a fifth of its time); only a style that says "float" can need it.
        align_floating_images="float" in raw_html,
    ).transform()
    if not html.lstrip().lower().startswith("<!doctype"):
        html = "<!doctype html>\n" + html
    warnings = check_html(html, tokens)
    for warning in warnings:
        log.warning("edition %s: %s", edition.name, warning)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    check_text(text, tokens)
    return RenderedEdition(
        name=edition.name,
        subject=edition.subject,
        preheader=edition.preheader,
        html=html,
        text=text,
        warnings=warnings,
        token_key=tokens.key,
    )


def write(
    rendered: RenderedEdition, out_dir: Path, fill: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """Write EDITION.html and EDITION.txt, with tokens filled for a preview reader."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html = _tokens.fill(rendered.html, fill or {})
    text = _tokens.fill(rendered.text, fill or {})
    html_path = out_dir / f"{rendered.name}.html"
    text_path = out_dir / f"{rendered.name}.txt"
    html_path.write_text(html, encoding="utf-8")
    text_path.write_text(text, encoding="utf-8")
    return html_path, text_path
