"""The SendGrid backend: one v3 Mail Send request per batch, one personalization per recipient.

The HTML and text of the edition go once per request in `content`; what differs per
reader (greeting, signed unsubscribe URL) goes in each personalization's
`substitutions`, which SendGrid fills in (DESIGN: render once, personalise by
substitution). One personalization per recipient means each message has one
address in To:, so nobody sees anybody else's.

Limits, from SendGrid's Mail Send API reference and its "Errors" page
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send):
at most 1,000 personalizations per request, `substitutions` at most 10,000 bytes
per personalization, at most 10 categories of at most 255 characters, and the
`text/plain` content before `text/html`.

Transport. The official `sendgrid` client (SendGridAPIClient) is where the API's
address, the `Authorization: Bearer` header and the library's User-Agent come from.
Its request path is not used for the batches themselves: python-http-client opens
a new urllib connection per request (sending `Connection: close`) and formats the
whole ~700 KB body into a debug-log string before checking the log level. Posting
a 1,000-recipient body took it about 27 ms against 20 ms for a kept-alive httpx
connection doing the same json.dumps (bench/bench_transport.py, docs/benchmarks.md):
7 µs a recipient, a quarter of what a whole send costs per recipient here. So the
batches go through httpx, with the URL and headers the library would send.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sendgrid import SendGridAPIClient

from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Batch, Recipient
from digest.send.base import (
    ONE_CLICK,
    BatchRejected,
    Letter,
    PushResult,
    SendStopped,
    TransientError,
)
from digest.subscribers import needs_smtputf8

log = logging.getLogger("digest.send.sendgrid")

DEFAULT_HOST = "https://api.sendgrid.com"
SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255

# python-http-client logs every request's headers at DEBUG, Authorization included.
# Whatever the root logger's level, that logger never goes below INFO here.
logging.getLogger("python_http_client").setLevel(logging.INFO)


def _display_name(name: str) -> str:
    """A To: name SendGrid will not split.

    SendGrid treats a comma or semicolon in `to.name` as an address separator and
    drops the message as invalid (sendgrid-python#291, sendgrid-php#351: "commas and
    semicolons are not allowed"). A quoted display-name (RFC 5322 3.2.4) is the
    workaround SendGrid's support gives (sendgrid-csharp#268).
    """
    if "," not in name and ";" not in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _api_errors(response: httpx.Response) -> str:
    """SendGrid's own words for a refusal: `errors[].message`, with the field when given."""
    try:
        errors = response.json().get("errors") or []
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message", ""))
            for e in errors
            if isinstance(e, dict)
        ]
        if parts:
            return "; ".join(parts)[:1000]
    except (ValueError, AttributeError):
        pass
    return (response.text or response.reason_phrase)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds until SendGrid's rate-limit window resets.

    X-RateLimit-Reset is a Unix timestamp in seconds (SendGrid, "Rate Limits").
    """
    reset = response.headers.get("X-RateLimit-Reset")
    if not reset:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


def _substitutions_fit(letter: Letter, recipient: Recipient, url: str) -> dict[str, str]:
    """The recipient's substitutions, within SendGrid's 10,000 bytes per personalization.

    Only a name of thousands of characters can break the limit (the other values are
    a greeting and one URL); then the reader is greeted without it rather than have
    SendGrid refuse the whole batch of 1,000.
    """
    values = letter.substitutions(recipient, url)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size <= MAX_SUBSTITUTION_BYTES:
        return values
    log.warning("%s: name too long for SendGrid substitutions; left out", recipient.email)
    return letter.substitutions(Recipient(recipient.email), url)


#: Below this many characters of name the substitutions cannot reach 10,000 bytes
#: (two greetings, at most 8 bytes a character between them, plus one URL), so
#: they are not measured.
_NAME_CHECK_FROM = 1000


class RequestWriter:
    """The Mail Send request bodies for the batches of one letter, as JSON bytes.

    Everything but the personalizations is the same in every batch and is
    serialised once. The personalizations of a batch are plain dicts, the parts
    every reader shares (the custom args) shared, serialised in one orjson call.
    The values come from the Letter (reader_parts: the same as its substitutions
    and list_unsubscribe), which stays the one place that decides what a
    recipient's copy says. This writes a batch of 1,000 several times faster than
    the json module did (docs/benchmarks.md). A body orjson cannot write (a name
    with a lone surrogate, which is not Unicode text) is written by the json
    module instead, with the same content.
    """

    def __init__(
        self, letter: Letter, *, asm_group_id: int | None = None, sandbox: bool = False
    ) -> None:
        self.letter = letter
        # The substitutions as Letter.substitutions names them, in the same order.
        tokens = letter.tokens
        self._greeting = tokens.greeting
        self._greeting_text = tokens.greeting_text
        self._unsubscribe_url = tokens.unsubscribe_url
        self._reader = tokens.reader
        sender: dict[str, str] = {"email": letter.from_email}
        if letter.from_name:
            sender["name"] = letter.from_name
        message_headers = {"X-Digest-Edition": letter.edition}
        if letter.list_id:
            message_headers["List-Id"] = letter.list_id  # RFC 2919
        message: dict[str, Any] = {
            "from": sender,
            "subject": letter.subject,
            # text/plain first, then text/html: the order SendGrid requires.
            "content": [
                {"type": "text/plain", "value": letter.rendered.text},
                {"type": "text/html", "value": letter.rendered.html},
            ],
            "categories": list(dict.fromkeys(c[:MAX_CATEGORY_LENGTH] for c in letter.categories))[
                :MAX_CATEGORIES
            ],
            "headers": message_headers,
            "mail_settings": {"sandbox_mode": {"enable": sandbox}},
        }
        if letter.reply_to:
            message["reply_to"] = {"email": letter.reply_to}
        if asm_group_id is not None:
            message["asm"] = {"group_id": asm_group_id}
        self._rest = _dumps(message)[1:]  # b'"from": ...}': follows the personalizations

    def body(self, batch: Batch) -> bytes:
        """The JSON body of the Mail Send request for one batch."""
        if len(batch.recipients) > MAX_PERSONALIZATIONS:
            raise BatchRejected(
                f"batch {batch.number} has {len(batch.recipients)} recipients; "
                f"SendGrid takes at most {MAX_PERSONALIZATIONS} per request"
            )
        # In each personalization rather than once at message level: SendGrid's
        # OpenAPI spec types the message-level custom_args as a string while the
        # live API wants an object; an object per personalization satisfies both.
        custom_args = {"edition": self.letter.edition, "batch": str(batch.number)}
        personalization = self._personalization
        people = [personalization(r, custom_args) for r in batch.recipients]
        return b'{"personalizations":' + _dumps(people) + b"," + self._rest

    def _personalization(self, recipient: Recipient, custom_args: dict[str, str]) -> dict[str, Any]:
        name = recipient.name
        url, greeting_html, greeting_text, targets = self.letter.reader_parts(recipient)
        if len(name) < _NAME_CHECK_FROM:
            substitutions = {
                self._greeting: greeting_html,
                self._greeting_text: greeting_text,
                self._unsubscribe_url: url,
            }
            reader = self.letter.reader_part(recipient)
            if reader:  # a copy with per-reader click links (digest.clicks)
                substitutions[self._reader] = reader
        else:
            substitutions = _substitutions_fit(self.letter, recipient, url)
        return {
            "to": [
                {"email": recipient.email, "name": _display_name(name)}
                if name
                else {"email": recipient.email}
            ],
            "substitutions": substitutions,
            "headers": {"List-Unsubscribe": targets, "List-Unsubscribe-Post": ONE_CLICK}
            if targets
            else {},
            "custom_args": custom_args,
        }


def _dumps(value: Any) -> bytes:
    """JSON bytes: orjson, or the json module for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


#: SendGrid does not deliver to a non-ASCII local part (RFC 6531): the Mail Send API
#: answers 202, then drops the message as "Invalid" (SendGrid support, quoted in
#: github.com/sendgrid/sendgrid-csharp/issues/656: "a hard limitation on our end";
#: its "Invalid email addresses" page lists only ASCII local-part characters). So
#: such a recipient is refused here, with the reason, and shows in `digest sends`.
_NO_UTF8_LOCAL_PART = "not sent: SendGrid does not deliver to a non-ASCII local part (RFC 6531)"


def _without_utf8_local_parts(batch: Batch) -> tuple[Batch, tuple[tuple[str, str], ...]]:
    """The batch without recipients SendGrid cannot take, and those, with the reason."""
    if all(r.email.isascii() for r in batch.recipients):  # nearly always: nothing to do
        return batch, ()
    left = [r for r in batch.recipients if not needs_smtputf8(r.email)]
    refused = tuple(
        (r.email, _NO_UTF8_LOCAL_PART) for r in batch.recipients if needs_smtputf8(r.email)
    )
    for email, reason in refused:
        log.warning("%s %s", email, reason)
    if not left:
        raise BatchRejected(
            f"SendGrid cannot take any of the {len(refused)} recipients of batch "
            f"{batch.number}: {_NO_UTF8_LOCAL_PART}"
        )
    return dataclasses.replace(batch, recipients=left), refused


class SendGridBackend:
    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_HOST,
        asm_group_id: int | None = None,
        sandbox: bool = False,
        timeout: float = 30.0,
    ) -> None:
        if not api_key:
            raise ConfigError("SENDGRID_API_KEY is empty")
        self.api = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self.asm_group_id = asm_group_id
        self.sandbox = sandbox
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.api.host,
            headers={**self.api.client.request_headers, "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        # One writer per letter (a send has one letter per section preference),
        # by identity: a Letter holds its rendered copy and is not hashable.
        self._writers: dict[int, RequestWriter] = {}
        self._writers_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridBackend:
        key = settings.env.get("SENDGRID_API_KEY", "").strip()
        if not key:
            raise ConfigError(
                "SENDGRID_API_KEY is not set: create an API key with the Mail Send permission "
                "in SendGrid (Settings > API Keys) and put it in the environment"
            )
        host = settings.env.get("SENDGRID_API_HOST", "").strip() or DEFAULT_HOST
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"SENDGRID_API_HOST {host!r} is not a URL; use e.g. {DEFAULT_HOST} "
                "or https://api.eu.sendgrid.com"
            )
        return cls(
            key,
            host=host,
            asm_group_id=settings.delivery.asm_group_id,
            sandbox=settings.delivery.sandbox,
            timeout=settings.delivery.request_timeout,
        )

    # -- the call ------------------------------------------------------------------
    def request_body(self, letter: Letter, batch: Batch) -> bytes:
        """The JSON body for one batch; the letter's constant part is written once."""
        writer = self._writers.get(id(letter))
        if writer is None or writer.letter is not letter:
            writer = RequestWriter(letter, asm_group_id=self.asm_group_id, sandbox=self.sandbox)
            with self._writers_lock:
                if len(self._writers) >= 64:  # letters of sends long finished (a worker)
                    self._writers.clear()
                self._writers[id(letter)] = writer
        return writer.body(batch)

    def push(self, letter: Letter, batch: Batch) -> PushResult:
        batch, refused = _without_utf8_local_parts(batch)
        body = self.request_body(letter, batch)
        try:
            response = self._http.post(SEND_PATH, content=body)
        except httpx.TimeoutException:
            raise TransientError(
                f"SendGrid did not answer batch {batch.number} within {self.timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            # Connection refused, reset or dropped before an answer came.
            raise TransientError(
                f"connection to SendGrid failed for batch {batch.number}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        result = self._result(response, batch)
        return dataclasses.replace(result, refused=refused) if refused else result

    def _result(self, response: httpx.Response, batch: Batch) -> PushResult:
        status = response.status_code
        if 200 <= status < 300:  # 202 Accepted; 200 in sandbox mode
            return PushResult(status=status, message_id=response.headers.get("X-Message-Id", ""))
        reason = _api_errors(response)
        if status == 429:
            raise TransientError(
                f"SendGrid rate limit reached (429) on batch {batch.number}",
                status=status,
                retry_after=_retry_after(response),
            )
        if status >= 500:
            raise TransientError(
                f"SendGrid server error {status} on batch {batch.number}: {reason}", status=status
            )
        if status in (401, 403):
            raise SendStopped(
                f"SendGrid refused the API key ({status}: {reason}); check that SENDGRID_API_KEY "
                "is a current key with the Mail Send permission and that the sender is verified",
                status=status,
            )
        if status in (404, 405):
            raise SendStopped(
                f"no Mail Send endpoint at {self.api.host}{SEND_PATH} ({status}); "
                "check SENDGRID_API_HOST",
                status=status,
            )
        # 400, 413 and any other refusal of this body: this batch fails, others go on.
        raise BatchRejected(
            f"SendGrid rejected batch {batch.number} ({status}): {reason}", status=status
        )

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._http.close()
