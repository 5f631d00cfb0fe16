"""The editors' note: a few lines to readers under the greeting, in plain text.

What an editor may write (docs/editing.md):
- plain text; a blank line starts a new paragraph, a single newline breaks the line;
- links as a bare address (`https://example.org/budget`) or as `[words](https://...)`;
  only http(s) links: a `[words](javascript:...)` is refused when the note is set,
  and anything else that is not an http(s) link stays text;
- at most [limits] note_max_chars characters, counted after clean-up.

Nothing else is markup: `<script>` is shown as those characters (the templates escape
it), and token syntax (`%%name%%`) is made inert at render like all content
(digest.tokens). Control characters and the bidi embedding, override and isolate
controls are taken out when the note is set: they could make a link read as another
address. A note in a right-to-left script is marked dir="auto" in the HTML, so it
reads in its own direction whatever the newsroom's language.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, NamedTuple

from digest.collect.urls import is_safe_link
from digest.errors import DigestError
from digest.tokens import inert_text, inert_url

#: [words](address) or a bare http(s) address. The words stay on one line.
_LINK = re.compile(
    r"\[(?P<words>[^\[\]\n]{1,300})\]\((?P<target>[^()\s]{1,2000})\)"
    r"|(?P<bare>https?://[^\s<>\"'()\[\]]{1,2000})",
    re.IGNORECASE,
)
#: What an editor meant as a link, up to its first ")" or space: checked when it is set.
_MEANT_LINK = re.compile(r"\[(?P<words>[^\[\]\n]{1,300})\]\(\s*(?P<target>[^\s)]*)")
#: Ends a sentence, not an address: "see https://example.org/vote." keeps the full stop.
_TRAILING = ".,;:!?"
#: C0/C1 controls (newline aside) and the bidi embedding, override and isolate controls.
_UNWANTED = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class NoteError(DigestError):
    """A note that cannot be set: the message says why and what to do."""


class Part(NamedTuple):
    """One piece of a paragraph: text, a link (text + url), or a line break."""

    kind: Literal["text", "link", "break"]
    text: str = ""
    url: str = ""


Paragraph = list[Part]


def clean(value: str, max_chars: int) -> str:
    """The note as it is kept: NFC, newlines only, no control or bidi-control
    characters, no trailing spaces, at most one blank line in a row. Raises NoteError
    when it is over max_chars or holds a link that is not http(s)."""
    if len(value) > 4 * max_chars + 1000:  # 1 MB pasted by mistake: no need to look at it
        raise NoteError(_too_long(len(value), max_chars))
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    text = _UNWANTED.sub(lambda m: " " if m.group() == "\t" else "", text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) > max_chars:
        raise NoteError(_too_long(len(text), max_chars))
    for match in _MEANT_LINK.finditer(text):
        target = match.group("target")
        if not is_safe_link(target):
            raise NoteError(
                f"the note's link [{match.group('words')[:40]}]({target[:60]}) is not an "
                "http(s) address; an email may link only to http:// and https:// pages"
            )
    return text


def _too_long(length: int, max_chars: int) -> str:
    return (
        f"the note is {length:,} characters; keep it to {max_chars:,} "
        "([limits] note_max_chars), a few lines readers see under the greeting"
    )


def paragraphs(note: str) -> list[Paragraph]:
    """The note in parts, every text inert (digest.tokens) and every link http(s):
    what the templates show. A stored note was cleaned when it was set; this does not
    rely on it for safety."""
    found: list[Paragraph] = []
    for block in re.split(r"\n\s*\n", note.strip()):
        parts: Paragraph = []
        for number, line in enumerate(block.split("\n")):
            if number:
                parts.append(Part("break"))
            parts.extend(_line(line))
        if parts:
            found.append(parts)
    return found


def _line(line: str) -> Paragraph:
    parts: Paragraph = []
    at = 0
    for match in _LINK.finditer(line):
        words, url = match.group("words"), match.group("target") or match.group("bare")
        end = match.end()
        if match.group("bare"):
            kept = url.rstrip(_TRAILING)
            end -= len(url) - len(kept)
            url = words = kept
        if not is_safe_link(url):
            continue  # stays text, with the rest of the line
        if match.start() > at:
            parts.append(Part("text", inert_text(line[at : match.start()])))
        parts.append(Part("link", inert_text(words), inert_url(url)))
        at = end
    if at < len(line):
        parts.append(Part("text", inert_text(line[at:])))
    return parts


def as_text(paragraph: Paragraph) -> str:
    """A paragraph for the plain-text part: a link as "words (address)", or the bare
    address when the words are the address."""
    out = []
    for part in paragraph:
        if part.kind == "break":
            out.append("\n")
        elif part.kind == "link" and part.text != part.url:
            out.append(f"{part.text} ({part.url})")
        else:
            out.append(part.url or part.text)
    return "".join(out)
