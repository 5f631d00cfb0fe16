"""What a rendered copy must be before anyone gets it: the checks after every render, and
the Gmail clip gate before a send.

check_html and check_text run on every render (render.render) and raise RenderError for
what must never be mailed: scripts, unsafe links, pictures a mail client cannot load,
per-recipient tokens where a template may not put them (digest.tokens).

clip_gate runs when a send starts (jobs.send): Gmail shows only the first 102 KB of an
HTML part and hides the rest behind "[Message clipped] View entire message", the
footer's unsubscribe link and postal address included (Google's Gmail help, "Gmail
clips long messages"; Email on Acid and Litmus measure the limit at 102 KB of HTML
source, pictures not counted). A send of such a copy is refused, with its size and
what to cut, unless the operator says to send it anyway (`--allow-clipped`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from digest.errors import DigestError, SendError
from digest.models import RenderedEdition
from digest.tokens import TOKEN_SYNTAX, Tokens

#: Gmail clips messages whose HTML is over about 102 KB and hides the footer,
#: unsubscribe link included.
GMAIL_CLIP_BYTES = 102 * 1024
#: Everything mailed points at absolute web addresses (DESIGN: pictures that load); a
#: local picture is published under [web] base_url first (digest.media).
IMAGE_SCHEMES = ("http", "https")
#: The parts of the email the templates mark (css-class "part-..."), in reading order,
#: with the words an operator knows them by: what the clip gate says to cut.
PARTS = {
    "part-header": "the header",
    "part-note": "the editors' note",
    "part-lead": "the lead story",
    "part-more": "More in News",
    "part-most-read": "Most Read",
    "part-footer": "the footer",
}


class RenderError(DigestError):
    """The template or its output is broken: nothing is sent."""


class ClippedError(SendError):
    """The copy is over Gmail's clip limit: the send is refused unless overridden."""


def _check_tokens_html(doc: Any, html: str, tokens: Tokens) -> None:
    """Per-recipient values only where a template may put them (digest.tokens): the
    unsubscribe link as a whole href, the greeting as text, the reader's click-link part
    only at the end of a first-party click link's href; no other token anywhere."""
    own = {tokens.greeting, tokens.unsubscribe_url, tokens.reader}
    for found in set(TOKEN_SYNTAX.findall(html)) - own:
        raise RenderError(
            f"rendered HTML holds {found[:40]!r}, which is not one of this copy's tokens; "
            "templates must write tokens.greeting and tokens.unsubscribe_url"
        )
    for attribute in doc.xpath("//@*"):
        value = str(attribute)
        if "%%" not in value or not any(token in value for token in own):
            continue
        element = attribute.getparent()
        if attribute.attrname == "href" and value.strip() == tokens.unsubscribe_url:
            continue
        if attribute.attrname == "href" and _is_click_link(value.strip(), tokens.reader):
            continue
        raise RenderError(
            f"rendered HTML has a per-recipient token in <{element.tag} "
            f"{attribute.attrname}=...>; a template may put tokens.unsubscribe_url only as a "
            "whole href, and tokens.greeting only in text"
        )
    if not any(
        (a.get("href") or "").strip() == tokens.unsubscribe_url for a in doc.xpath("//a[@href]")
    ):
        raise RenderError("the template has no unsubscribe link (tokens.unsubscribe_url)")


def _is_click_link(href: str, reader: str) -> bool:
    """A first-party click link with the reader's part (digest.clicks): http(s), a path
    ending /r/<link token>/<the reader token>, no query, nothing after the token."""
    if not href.endswith("/" + reader):
        return False
    parts = urlsplit(href.removesuffix(reader))
    return (
        parts.scheme in ("http", "https")
        and not parts.query
        and not parts.fragment
        and _CLICK_PATH.fullmatch(parts.path.rsplit("/r/", 1)[-1]) is not None
        and "/r/" in parts.path
    )


_CLICK_PATH = re.compile(r"[A-Za-z0-9._-]+/")


def check_text(text: str, tokens: Tokens) -> None:
    """The text part: only its own tokens, and the unsubscribe link among them."""
    own = {tokens.greeting_text, tokens.unsubscribe_url, tokens.reader}
    for found in set(TOKEN_SYNTAX.findall(text)) - own:
        raise RenderError(
            f"the text part holds {found[:40]!r}, which is not one of this copy's tokens"
        )
    if tokens.unsubscribe_url not in text:
        raise RenderError("the text template has no unsubscribe link (tokens.unsubscribe_url)")


def check_html(html: str, tokens: Tokens) -> list[str]:
    """Post-render checks. Returns warnings; raises RenderError for what must never be sent."""
    from lxml import html as lxml_html

    doc = lxml_html.fromstring(html)
    if doc.xpath("//script") or doc.xpath("//iframe") or doc.xpath("//object"):
        raise RenderError("rendered HTML contains <script>, <iframe> or <object>; not sent")
    for element in doc.xpath("//*[@href]"):
        href = element.get("href", "").strip()
        if not href.lower().startswith(("http:", "https:", "mailto:")) and (
            href != tokens.unsubscribe_url
        ):
            raise RenderError(
                f"rendered HTML has a link that is not http(s) or mailto: {href[:80]!r}"
            )
    for element in doc.xpath("//*[@src]"):
        if urlsplit(element.get("src", "")).scheme.lower() not in IMAGE_SCHEMES:
            raise RenderError(
                "rendered HTML has a picture that is not an absolute http(s) address: "
                f"{element.get('src')[:80]!r}; a mail client cannot load it"
            )
    for attributes in doc.xpath("//@*"):
        if attributes.attrname.lower().startswith("on"):
            raise RenderError("rendered HTML has an event-handler attribute; not sent")
    _check_tokens_html(doc, html, tokens)
    warnings = []
    clipped = clip_report(html)
    if clipped:
        warnings.append(clipped)
    return warnings


def _kb(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size >= 10 * 1024 else f"{size / 1024:.1f} KB"


def clip_report(html: str) -> str:
    """ "" when the HTML fits under Gmail's clip limit; otherwise one line with its size and
    the parts that weigh most, biggest first, so the operator knows what to cut."""
    size = len(html.encode())
    if size <= GMAIL_CLIP_BYTES:
        return ""
    # lxml only here: a send of stored copies (jobs.send) does not load the render stack.
    from lxml import html as lxml_html

    doc = lxml_html.fromstring(html)
    weights: dict[str, list[int]] = {}
    for part, _words in PARTS.items():
        blocks = doc.xpath(f"//*[contains(concat(' ', @class, ' '), ' {part} ')]")
        if blocks:
            weights[part] = [len(lxml_html.tostring(b, encoding="utf-8")) for b in blocks]
    styles = sum(len(s.encode()) for s in doc.xpath("//head//style/text()"))
    heaviest = sorted(weights.items(), key=lambda item: -sum(item[1]))
    parts = []
    for part, sizes in heaviest[:3]:
        each = ""
        if part == "part-more":
            each = f" ({len(sizes)} stories, about {_kb(sum(sizes) // len(sizes))} each)"
        parts.append(f"{PARTS[part]} {_kb(sum(sizes))}{each}")
    parts.append(f"styles {_kb(styles)}")
    return (
        f"the HTML is {_kb(size)}, {_kb(size - GMAIL_CLIP_BYTES)} over Gmail's "
        f"{GMAIL_CLIP_BYTES // 1024} KB clip "
        f"limit, so Gmail would hide its end, the unsubscribe link included; the heaviest "
        f"parts: {'; '.join(parts)}. Drop stories (digest edit --drop) or lower [edition] "
        "more_count and render again"
    )


def clip_gate(copies: dict[str, RenderedEdition], allow_clipped: bool = False) -> list[str]:
    """Refuse a send whose copies Gmail would clip (ClippedError), unless `allow_clipped`;
    then the reports come back as warnings to log."""
    reports = []
    for key, rendered in sorted(copies.items()):
        report = clip_report(rendered.html)
        if report:
            which = f"the copy for {key!r}" if key else "the edition"
            reports.append(f"edition {rendered.name}, {which}: {report}")
    if reports and not allow_clipped:
        raise ClippedError(f"{reports[0]}; or send it as it is with --allow-clipped")
    return reports
