"""What every mail backend shares: the letter to send, the small Backend protocol, the errors.

Like listmonk's Messenger, a backend is Name / Push / Flush / Close and nothing
else; batching, retries and the ledger live in ledger.py, once for all of them.
"""

from __future__ import annotations

import email.policy
import functools
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

from digest.errors import SendError
from digest.models import Batch, Recipient, RenderedEdition
from digest.tokens import Tokens, fill, inert_text

#: CRLF line ends as SMTP wants. Header lines may run to RFC 5322's hard limit of
#: 998: Python's folder otherwise breaks a long subject right after "Subject:",
#: which some clients show as a leading space.
MESSAGE_POLICY = email.policy.SMTP.clone(max_line_length=998)
#: For a recipient whose local part is not ASCII (RFC 6531/6532): headers in raw
#: UTF-8, which only an SMTPUTF8 transaction may carry. The default policy would
#: put an RFC 2047 encoded-word inside the address, which RFC 2047 section 5 forbids.
UTF8_MESSAGE_POLICY = MESSAGE_POLICY.clone(utf8=True)
#: The parts' bodies are encoded under RFC 2045's own limit instead: quoted-printable
#: and base64 lines of at most 76 characters (6.7, 6.8). Under MESSAGE_POLICY the
#: encoder wrote 998-character quoted-printable lines, which SpamAssassin scores
#: (MIME_QP_LONG_LINE, and LONGLN_LOW_CONTRAST with the hidden preheader).
BODY_POLICY = MESSAGE_POLICY.clone(max_line_length=76)
#: The RFC 8058 List-Unsubscribe-Post value.
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Letter:
    """One rendered edition, addressed: everything a backend needs besides the recipients."""

    edition: str
    rendered: RenderedEdition
    subject: str
    from_email: str
    from_name: str
    reply_to: str
    unsubscribe_base: str  # e.g. https://news.example.org/unsubscribe/ ; token appended
    unsubscribe_mailto: str
    secret: bytes = field(repr=False)
    list_id: str = ""
    categories: tuple[str, ...] = ()
    test: bool = False
    #: The greeting with a reader's name and without, in the edition's language
    #: (digest.locale.Language.greetings).
    greetings: tuple[str, str] = ("Good morning, %(name)s.", "Good morning.")

    @property
    def is_list_mail(self) -> bool:
        """An edition is list mail; a notice to the operators (no unsubscribe base) is not."""
        return bool(self.unsubscribe_base)

    def unsubscribe_url(self, recipient: Recipient) -> str:
        if not self.is_list_mail:
            return ""
        return self.unsubscribe_base + self._sign(recipient.email)

    @functools.cached_property
    def _sign(self) -> Callable[[str], str]:
        """The signer, keyed once per letter: it runs for every recipient of a send."""
        from digest.subscribers import token_signer

        return token_signer(self.secret)

    @functools.cached_property
    def tokens(self) -> Tokens:
        """The tokens this copy was rendered with (its own random key: digest.tokens)."""
        return Tokens(self.rendered.token_key)

    @functools.cached_property
    def _reader_seal(self) -> Callable[[str], str] | None:
        """Seals a reader's address for this copy's click links (`[web]
        click_tracking_per_reader`: digest.clicks); None for a copy without them."""
        token = self.tokens.reader
        if token not in self.rendered.html and token not in self.rendered.text:
            return None
        from digest.clicks import ReaderSeal

        return functools.partial(ReaderSeal(self.secret).seal, self.edition)

    def reader_part(self, recipient: Recipient) -> str:
        """The reader's part of their click links, "" for a copy without per-reader links."""
        seal = self._reader_seal
        return seal(recipient.email) if seal is not None else ""

    def greeting_for(self, name: str) -> tuple[str, str]:
        """The greeting for a reader of this name: (HTML-escaped, plain text)."""
        if not name:
            return self._anonymous_greeting
        # A name comes from a CSV row or a signup form: inert like any content (tokens).
        greeting = self.greetings[0] % {"name": inert_text(name)}
        return html.escape(greeting), greeting

    @functools.cached_property
    def _anonymous_greeting(self) -> tuple[str, str]:
        return html.escape(self.greetings[1]), self.greetings[1]

    def substitutions(self, recipient: Recipient, unsubscribe_url: str = "") -> dict[str, str]:
        """Token -> value for one recipient, HTML-escaped where the token sits in HTML.

        Only this copy's own tokens are named, so only the places its template put
        them get a reader's values (digest.tokens). Pass `unsubscribe_url` when you
        have it already: signing is the costly part, and a SendGrid batch needs the
        URL twice per recipient (here and in the headers).
        """
        greeting_html, greeting_text = self.greeting_for(recipient.name)
        return self.tokens.values(
            greeting_html,
            greeting_text,
            unsubscribe_url or self.unsubscribe_url(recipient),
            self.reader_part(recipient),
        )

    def unsubscribe_targets(self, unsubscribe_url: str) -> str:
        """The RFC 2369 List-Unsubscribe value for a reader's signed unsubscribe URL."""
        if not self.unsubscribe_mailto:
            return f"<{unsubscribe_url}>"
        # The token is base64url and ".", all unreserved in a URI (RFC 3986 2.3),
        # so it goes into the mailto subject as it is.
        token = unsubscribe_url.rsplit("/", 1)[-1]
        return (
            f"<{unsubscribe_url}>, <mailto:{self.unsubscribe_mailto}?subject=unsubscribe%20{token}>"
        )

    def reader_parts(self, recipient: Recipient) -> tuple[str, str, str, str]:
        """Everything of one reader's copy at once, for a send that writes thousands a
        second: (signed unsubscribe URL, greeting as HTML, greeting as text,
        List-Unsubscribe value; the URL and that value "" for a notice).

        The same values substitutions() and list_unsubscribe() give, from the same
        methods, with the URL signed once.
        """
        greeting_html, greeting_text = self.greeting_for(recipient.name)
        if not self.unsubscribe_base:
            return "", greeting_html, greeting_text, ""
        url = self.unsubscribe_base + self._sign(recipient.email)
        return url, greeting_html, greeting_text, self.unsubscribe_targets(url)

    def list_unsubscribe(self, recipient: Recipient, unsubscribe_url: str = "") -> dict[str, str]:
        """RFC 2369 List-Unsubscribe and RFC 8058 one-click headers for one recipient.

        None for a notice to the operators: there is no list to leave.
        """
        if not self.is_list_mail:
            return {}
        return {
            "List-Unsubscribe": self.unsubscribe_targets(
                unsubscribe_url or self.unsubscribe_url(recipient)
            ),
            "List-Unsubscribe-Post": ONE_CLICK,
        }

    def message_for(self, recipient: Recipient) -> EmailMessage:
        """A complete RFC 5322 message for one recipient, tokens filled (outbox and SMTP)."""
        url = self.unsubscribe_url(recipient)
        values = self.substitutions(recipient, url)
        html_part, text_part = fill(self.rendered.html, values), fill(self.rendered.text, values)
        sender = _mailbox(self.from_name, self.from_email)
        to = _mailbox(recipient.name, recipient.email)
        # A non-ASCII local part makes it an RFC 6532 message (headers in UTF-8).
        international = not (sender.username.isascii() and to.username.isascii())
        message = EmailMessage(
            policy=BODY_POLICY.clone(utf8=True) if international else BODY_POLICY
        )
        message["From"] = sender
        message["To"] = to
        message["Subject"] = self.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=sender.domain)
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        if self.list_id:
            message["List-Id"] = self.list_id
        for name, value in self.list_unsubscribe(recipient, url).items():
            message[name] = value
        message["X-Digest-Edition"] = self.edition
        message.set_content(text_part, subtype="plain", charset="utf-8")
        message.add_alternative(html_part, subtype="html", charset="utf-8")
        # The bodies are encoded; headers fold at 998.
        message.policy = UTF8_MESSAGE_POLICY if international else MESSAGE_POLICY
        return message


def _mailbox(name: str, email: str) -> Address:
    """A header's mailbox, its domain in A-labels (RFC 5890): an RFC 5322 header has no
    other way to carry an IDN (an encoded-word inside an address is invalid, RFC 2047
    section 5). Built from its parts: Address(addr_spec=...) refuses a non-ASCII local
    part even where RFC 6532 allows one."""
    from digest.subscribers import a_label_address

    local, _, domain = a_label_address(email).rpartition("@")
    return Address(name, username=local, domain=domain)


@dataclass(frozen=True)
class PushResult:
    status: int = 0
    message_id: str = ""
    #: Recipients the server refused for good, with its words; the rest were accepted.
    refused: tuple[tuple[str, str], ...] = ()
    #: Those of them whose address does not exist, with its words: the ledger
    #: suppresses them.
    bounced: tuple[tuple[str, str], ...] = ()
    #: Recipients whose message may or may not have gone (the connection died after
    #: it was handed over, before the answer), and why: the ledger leaves the batch
    #: in doubt, and `--retry-in-doubt` resends only those (digest/send/journal.py).
    in_doubt: tuple[tuple[str, str], ...] = ()


class Backend(Protocol):
    """A way to deliver mail. Push one batch; raise the errors below to say what went wrong.

    A backend that hands messages over one recipient at a time (SMTP, outbox) also
    tells `batch.journal` about each recipient as it goes, so that no retry, resume or
    crash mails an accepted recipient again (digest/send/journal.py). One request per
    batch (SendGrid) needs no journal.
    """

    name: str

    def push(self, letter: Letter, batch: Batch) -> PushResult: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TransientError(SendError):
    """Worth retrying: 429, 5xx, a timeout, a dropped connection.

    partial: sending the batch again in a later claim might mail someone twice (a
    recipient's message may have gone before the connection died: SMTP, see
    journal.py). Retrying it in this claim skips whoever is settled; if the ledger
    gives up, the batch is left in doubt, not failed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        retry_after: float | None = None,
        partial: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.partial = partial


class BatchRejected(SendError):
    """The API refused this batch for good (400, 413): mark it failed, go on with the rest.

    bounced: addresses the server said do not exist (SMTP), to be suppressed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        bounced: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.bounced = bounced


class SendStopped(SendError):
    """Nothing more can go out (401/403, a bad host): stop the whole send now."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
