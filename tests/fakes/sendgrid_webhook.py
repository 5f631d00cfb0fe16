"""SendGrid's side of the Event Webhook, for tests: events about every message the fake
server accepted, posted and signed the way SendGrid posts and signs them.

What it copies from SendGrid's docs ("Event Webhook Reference", "Getting Started
with the Event Webhook Security Features", "Unique Arguments"):

- a POST is a JSON array of events; each event has `email`, `timestamp` (Unix
  seconds), `event`, `sg_event_id`, `sg_message_id`, `smtp-id`, `category`, and the
  message's custom args as top-level keys (here `edition` and `batch`);
- it is signed: ECDSA P-256 with SHA-256 over the timestamp header followed by the
  raw body, base64 DER in X-Twilio-Email-Event-Webhook-Signature, the timestamp in
  X-Twilio-Email-Event-Webhook-Timestamp;
- a POST not answered 2xx is posted again, later (SendGrid: for up to 24 hours);
- an event may arrive more than once ("Duplicate events"): `repeat_first` posts the
  first request twice.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookKey:
    """An ECDSA P-256 key pair, used the way SendGrid uses its own."""

    def __init__(self, private: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private = private or ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: What SendGrid shows as the "Verification Key": base64 DER, no PEM armour.
        self.verification_key = base64.b64encode(der).decode()

    @classmethod
    def load(cls, path: Path) -> WebhookKey:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        return cls(private)

    def save(self, path: Path) -> Path:
        path.write_bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }


def events_for(
    rows: list[tuple[str, str, str]],
    message_id: str,
    kinds: tuple[str, ...],
    categories: list[str],
) -> list[dict[str, Any]]:
    """The events SendGrid emits for one accepted request's recipients."""
    now = int(time.time())
    events = []
    for number, (email, edition, batch) in enumerate(rows):
        for kind in kinds:
            event: dict[str, Any] = {
                "email": email,
                "timestamp": now,
                "smtp-id": f"<{message_id}@ismtpd-fake>",
                "event": kind,
                "category": categories,
                "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                "sg_message_id": f"{message_id}.filterdrecv-fake.{number}.0",
                "edition": edition,
                "batch": batch,
            }
            if kind == "delivered":
                event["response"] = "250 OK"
            events.append(event)
    return events


class EventPoster:
    """Posts queued events to a webhook URL from its own thread, as SendGrid does."""

    def __init__(
        self,
        url: str,
        key: WebhookKey,
        *,
        kinds: tuple[str, ...] = ("processed", "delivered"),
        per_post: int = 1000,
        repeat_first: bool = True,
    ) -> None:
        self.url = url
        self.key = key
        self.kinds = kinds
        self.per_post = per_post
        self.repeat_first = repeat_first
        self.posted = 0  # events answered 2xx, repeats included
        self.refused = 0  # POSTs answered otherwise or not at all, then posted again
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="event-poster", daemon=True)
        self._http = httpx.Client(timeout=30)

    def start(self) -> EventPoster:
        self._thread.start()
        return self

    def add(self, rows: list[tuple[str, str, str]], message_id: str, body: dict[str, Any]) -> None:
        events = events_for(rows, message_id, self.kinds, list(body.get("categories") or []))
        with self._ready:
            self._queue.extend(events)
            self._ready.notify()

    def stop(self, flush_seconds: float = 10.0) -> None:
        """Post what is queued (for up to flush_seconds), then stop."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(flush_seconds)
        self._http.close()

    def _take(self) -> list[dict[str, Any]] | None:
        with self._ready:
            while not self._queue:
                if self._stopping:
                    return None
                self._ready.wait(0.5)
            # SendGrid gathers events for a moment before it posts them.
            self._ready.wait(0.05)
            count = min(self.per_post, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        first = True
        while (events := self._take()) is not None:
            body = json.dumps(events).encode()
            for _ in range(2 if first and self.repeat_first else 1):
                self._post(body, len(events))
            first = False

    def _post(self, body: bytes, count: int) -> None:
        delay = 0.2
        while True:
            try:
                answer = self._http.post(self.url, content=body, headers=self.key.headers(body))
                if 200 <= answer.status_code < 300:
                    self.posted += count
                    return
            except httpx.TransportError:
                pass
            self.refused += 1
            if self._stopping and delay > 2:
                return  # shutting down: what is left stays unposted, as in an outage
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
