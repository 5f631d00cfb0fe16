"""SendGrid's Signed Event Webhook: check a request came from SendGrid, then turn its
bounces, spam reports and unsubscribes into suppressions, and keep every event about
an edition of ours: the delivery events settle the batches a crash left in doubt
(send/doubt.py), and all of them make the edition's report (digest.readership).

The provider-specific half of the webhook (like listmonk's bounce/webhooks/sendgrid.go);
digest/web/app.py only hands over the raw request.

Signing, per "Getting Started with the Event Webhook Security Features"
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):
SendGrid signs the timestamp header followed by the raw body with ECDSA P-256 and
SHA-256, and puts the signature (base64 DER) and the timestamp in two headers. The
"Verification Key" it shows is the public key, base64 DER. The official library's
`EventWebhook` helper does the check.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from email_validator import EmailNotValidError
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from digest.clicks import Places
from digest.errors import ConfigError, DigestError, InputError
from digest.store import Store
from digest.store.events import ReaderEvent, pick_places, record_events
from digest.subscribers import normalise_email

log = logging.getLogger("digest.send.sendgrid_events")

KEY_VARIABLE = "SENDGRID_WEBHOOK_VERIFICATION_KEY"
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp

#: A signed request is good for this long after SendGrid signed it. SendGrid retries
#: a POST that got no 2xx "for up to 24 hours after the event occurs" ("Troubleshooting
#: the Event Webhook", https://docs.sendgrid.com/for-developers/tracking-events/troubleshooting),
#: and a retry may carry its first signature: a shorter window would lose the bounces
#: of any outage longer than it. Replaying a captured request within the window
#: does no harm: suppressing an address twice changes nothing. The signature covers
#: the timestamp, so an old capture cannot be given a fresh one.
MAX_AGE_SECONDS = 25 * 3600
#: How far ahead of our clock a timestamp may be: clocks drift, but not by hours.
MAX_AHEAD_SECONDS = 5 * 60
_UNIX_TIME = re.compile(r"[0-9]{1,12}")

# Event names and fields, per the "Event Webhook Reference"
# (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event):
# every event has `email`, `event` and `timestamp`; a `bounce` has `type`, "bounce"
# for a permanent failure or "blocked" for a temporary refusal that SendGrid lists
# under Blocks and that may succeed later; a `dropped` has `reason`; events carry
# `asm_group_id` when the message was sent with an unsubscribe group.
_ALWAYS = {
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# SendGrid drops mail to an address already on one of its suppression lists, with
# one of these reasons ("Drops", https://docs.sendgrid.com/glossary/drops). Other
# reasons ("Invalid", "Spam Content", "Invalid SMTPAPI header", ...) say nothing
# about whether the reader wants the digest.
_DROPPED_BECAUSE = {
    "bounced address": "bounced",
    "unsubscribed address": "unsubscribed",
    "spam reporting address": "complained",
}


# Every event SendGrid posts about a message carries `sg_event_id`, `email`, `timestamp`
# and the message's custom args; v3 custom_args come back as top-level keys of the event
# ("Unique Arguments": the arguments appear in the event's JSON), older integrations saw
# them under `unique_args`, which the reference still lists. A `click` has the `url`
# clicked; an `open` has `sg_machine_open` (true when Apple Mail Privacy Protection or
# another proxy fetched the pictures, not the reader: "Event Webhook Reference").
# The delivery kinds among them settle batches in doubt (store.events.DELIVERY_KINDS).
KEPT_EVENTS = frozenset(
    {
        "processed",
        "dropped",
        "deferred",
        "delivered",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
    }
)
#: A clicked URL is kept to this length (the column's).
_MAX_URL = 2000
_MAX_DETAIL = 200
_EDITION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: A send's batch numbers; a test copy's "batch" is the clock in microseconds
#: (send.send_now), sixteen digits, and belongs to no send.
_BATCH = re.compile(r"[1-9][0-9]{0,8}")
_MAX_EVENT_ID = 100


class WebhookNotConfigured(ConfigError):
    """No usable verification key: the webhook accepts nothing (HTTP 503)."""


class SignatureRejected(DigestError):
    """The request is not one SendGrid signed, or it was signed too long ago (HTTP 403)."""


class MalformedEvents(InputError):
    """A correctly signed body that is not a JSON array of events (HTTP 400)."""


@dataclass
class EventReport:
    """What one webhook request held and what became of it."""

    events: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # "bounce": 3, "delivered": 40, ...
    suppressions: dict[str, int] = field(default_factory=dict)  # "bounced": 2, ...
    new_suppressions: int = 0  # addresses suppressed by this request, not already before
    recorded: int = 0  # events about a send's batch, kept (a repeat is kept once)
    ignored: int = 0
    rejected: list[str] = field(default_factory=list)


class Verifier:
    """The newsroom's verification key, loaded once, checking each request's signature."""

    def __init__(self, key: str) -> None:
        # SendGrid shows the key as base64 DER; accept a pasted PEM block too.
        body = "".join(
            line.strip() for line in key.strip().splitlines() if not line.startswith("-----")
        )
        try:
            webhook: EventWebhook | None = EventWebhook(body)
        except (ValueError, TypeError, binascii.Error):
            webhook = None
        public_key = webhook.public_key if webhook else None
        if webhook is None or not (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and isinstance(public_key.curve, ec.SECP256R1)
        ):
            # Never the key itself in the message: it reaches logs and HTTP answers.
            raise WebhookNotConfigured(
                f"{KEY_VARIABLE} is not an ECDSA P-256 public key; paste the Verification "
                "Key SendGrid shows under Settings → Mail Settings → Event Webhook"
            )
        self._webhook = webhook

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Verifier:
        key = env.get(KEY_VARIABLE, "").strip()
        if not key:
            raise WebhookNotConfigured(
                f"{KEY_VARIABLE} is not set, so no SendGrid event can be verified; "
                "see docs/sending.md (Signed event webhook)"
            )
        return cls(key)

    def verify(
        self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None
    ) -> None:
        """Raise SignatureRejected unless SendGrid signed exactly this body, recently."""
        if not signature or not timestamp:
            raise SignatureRejected(
                f"unsigned request: no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"
            )
        if not _UNIX_TIME.fullmatch(timestamp):
            raise SignatureRejected(f"{TIMESTAMP_HEADER} is not a Unix time")
        age = (time.time() if now is None else now) - int(timestamp)
        if age > MAX_AGE_SECONDS:
            raise SignatureRejected(
                f"signed {age:.0f} s ago, more than {MAX_AGE_SECONDS} s: a replay or a stale retry"
            )
        if -age > MAX_AHEAD_SECONDS:
            raise SignatureRejected(
                f"signed {-age:.0f} s in the future; check this machine's clock"
            )
        try:
            # The helper signs text (timestamp + payload, encoded as UTF-8); SendGrid
            # posts UTF-8 JSON, so a body that is not UTF-8 is not one it signed.
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureRejected("bad signature (the body is not UTF-8)") from None
        try:
            good = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, TypeError, binascii.Error):  # the signature is not base64 DER
            good = False
        if not good:
            raise SignatureRejected("bad signature")


def parse(body: bytes) -> list[Any]:
    """The events of a request body: SendGrid posts a JSON array of objects."""
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvents(f"the body is not JSON ({exc})") from None
    if not isinstance(events, list):
        raise MalformedEvents(f"the body is a JSON {type(events).__name__}, not an array of events")
    return events


def interpret(event: Mapping[str, Any], asm_group_id: int | None = None) -> str | None:
    """The suppression an event calls for ("bounced", "complained", "unsubscribed"), or None.

    With our own `asm_group_id`, a group_unsubscribe from another group of the same
    SendGrid account (another newsletter) leaves the digest alone.
    """
    kind = event.get("event")
    if kind == "bounce":
        return "bounced" if event.get("type") == "bounce" else None
    if kind == "dropped":
        return _DROPPED_BECAUSE.get(str(event.get("reason", "")).strip().lower())
    if kind == "group_unsubscribe" and asm_group_id is not None:
        group = event.get("asm_group_id")
        if group is not None and str(group) != str(asm_group_id):
            return None
    return _ALWAYS.get(str(kind))


def apply(store: Store, events: list[Any], asm_group_id: int | None = None) -> EventReport:
    """Suppress the addresses the events call for, in one transaction. A bad event is
    skipped and reported."""
    report, wanted = suppressions_of(events, asm_group_id)
    _suppress(store, report, wanted)
    return report


def suppressions_of(
    events: list[Any], asm_group_id: int | None = None
) -> tuple[EventReport, list[tuple[str, str, str]]]:
    """What the events ask for, without the database: the report so far, and the
    (email, reason, source) suppressions to write."""
    report = EventReport(events=len(events))
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    wanted: list[tuple[str, str, str]] = []
    for number, event in enumerate(events, 1):
        if not isinstance(event, dict):
            _reject(report, f"event {number}: not an object but {type(event).__name__}")
            continue
        kind = str(event.get("event") or "?")
        kinds[kind] += 1
        reason = interpret(event, asm_group_id)
        if reason is None:
            report.ignored += 1
            continue
        raw = event.get("email")
        if not isinstance(raw, str) or not raw.strip():
            _reject(report, f"event {number} ({kind}): no email")
            continue
        try:
            email = normalise_email(raw)
        except EmailNotValidError:
            _reject(report, f"event {number} ({kind}): {raw[:100]!r} is not an e-mail address")
            continue
        reasons[reason] += 1
        wanted.append((email, reason, f"sendgrid:{kind}"))
    report.kinds = dict(kinds)
    report.suppressions = dict(reasons)
    return report, wanted


def _suppress(store: Store, report: EventReport, wanted: list[tuple[str, str, str]]) -> None:
    # All of a post's suppressions in one transaction (a bounce-heavy post of a
    # thousand events was a thousand transactions).
    report.new_suppressions = len(store.subscribers.suppress_all(wanted))


def reader_event(event: Mapping[str, Any]) -> ReaderEvent | None:
    """The event to keep, or None: a kind we do not know, or about no batch of a send."""
    kind = event.get("event")
    if kind not in KEPT_EVENTS:
        return None
    args: Mapping[str, Any] = event
    if "edition" not in event and isinstance(event.get("unique_args"), dict):
        args = event["unique_args"]
    edition, batch = str(args.get("edition", "")), str(args.get("batch", ""))
    if not _EDITION.fullmatch(edition) or not _BATCH.fullmatch(batch):
        return None  # mail of another kind: a test copy, a notice to the operators
    email, stamp = event.get("email"), event.get("timestamp")
    if not isinstance(email, str) or not email.strip():
        return None
    try:
        timestamp = datetime.fromtimestamp(float(stamp), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    url = event.get("url") if kind == "click" else None
    machine = event.get("sg_machine_open") if kind == "open" else None
    detail = event.get("type") if kind == "bounce" else event.get("reason")
    return ReaderEvent(
        sg_event_id=_event_id(event),
        edition=edition,
        batch=int(batch),
        email=email.strip().lower()[:320],
        event=str(kind),
        timestamp=timestamp,
        url=url[:_MAX_URL] if isinstance(url, str) and url else None,
        machine_open=machine if isinstance(machine, bool) else None,
        detail=str(detail)[:_MAX_DETAIL] if kind in ("bounce", "dropped") and detail else None,
    )


#: The name it had when only delivery events were kept.
delivery_event = reader_event


def _event_id(event: Mapping[str, Any]) -> str:
    """SendGrid's sg_event_id, which a repeat of the event carries too.

    Without one (or one longer than the column), a digest of the event itself: the
    same event posted again gives the same digest.
    """
    given = event.get("sg_event_id")
    if isinstance(given, str) and 0 < len(given) <= _MAX_EVENT_ID:
        return given
    source = json.dumps(given if isinstance(given, str) else event, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def record(store: Store, events: list[Any], report: EventReport) -> None:
    """Keep the events about our sends' batches."""
    _record(store, report, delivery_events(events))


def delivery_events(events: list[Any]) -> list[ReaderEvent]:
    return [e for e in map(reader_event, filter(_is_object, events)) if e is not None]


def _record(store: Store, report: EventReport, kept: list[ReaderEvent]) -> None:
    report.recorded = record_events(store, placed(store, kept))


def placed(store: Store, events: list[ReaderEvent]) -> list[ReaderEvent]:
    """The events, each click with the place of its link in the edition (slot, position,
    story), from the edition's picks: one query per edition clicked in this request."""
    places: dict[str, Places] = {}
    out = []
    for e in events:
        if e.event == "click" and e.url:
            if e.edition not in places:
                places[e.edition] = Places(pick_places(store, e.edition))
            found = places[e.edition].place_of(e.url)
            if found is not None:
                e = replace(e, slot=found.slot, position=found.position, story_id=found.story_id)
        out.append(e)
    return out


def _is_object(event: Any) -> bool:
    return isinstance(event, dict)


def _reject(report: EventReport, problem: str) -> None:
    message = f"{problem}; skipped"
    report.rejected.append(message)
    log.warning("sendgrid webhook: %s", message)


@dataclass
class Received:
    """A verified webhook request, read: what it asks of the database."""

    report: EventReport
    suppressions: list[tuple[str, str, str]]  # (email, reason, source)
    delivery: list[ReaderEvent]  # every event to keep, not only delivery events


def read(
    verifier: Verifier,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    asm_group_id: int | None = None,
    now: float | None = None,
) -> Received:
    """Verify and read one webhook request, without the database (the web app does
    this in a request thread and leaves the writing to its one writer)."""
    verifier.verify(body, signature, timestamp, now)
    events = parse(body)
    report, wanted = suppressions_of(events, asm_group_id)
    return Received(report, wanted, delivery_events(events))


def write(store: Store, received: Received) -> EventReport:
    """Suppress and keep what a read request asks for; the report of the request.

    Safe to repeat: SendGrid posts a request again when we did not answer 2xx (a
    database away: HTTP 503), and may post an event twice anyway.
    """
    report = received.report
    _suppress(store, report, received.suppressions)
    _record(store, report, received.delivery)
    log.info(
        "sendgrid webhook: %d events, %d new suppressions, %d events kept, %d ignored, %d rejected",
        report.events,
        report.new_suppressions,
        report.recorded,
        report.ignored,
        len(report.rejected),
    )
    return report
