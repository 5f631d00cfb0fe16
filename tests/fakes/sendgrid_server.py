"""A SendGrid-compatible v3 Mail Send server on 127.0.0.1, for tests and benchmarks.

It enforces the limits SendGrid documents for `POST /v3/mail/send` (Mail Send API
overview and "Errors" pages, https://www.twilio.com/docs/sendgrid/api-reference/mail-send):

- `Authorization: Bearer <key>` equal to the configured key, else 401;
- 1 to 1,000 personalizations, at most 1,000 recipients (to + cc + bcc) per request,
  each address at most once per request;
- `from.email` and a subject (message level or in every personalization);
- `content` present, every value a non-empty string, `text/plain` before `text/html`;
- `substitutions` and `custom_args`: string values, at most 10,000 bytes per
  personalization;
- at most 10 `categories`, unique, each at most 255 characters;
- `headers` must not set the headers SendGrid reserves (To, From, Subject, ...);
- `asm.group_id` an integer; a request body of at most 30 MB (413 above).

It records every personalization it accepts (address, and the `edition` and `batch`
custom args) in memory and, optionally, appended to a file, one line each:
`email<TAB>edition<TAB>batch`. The file survives a client that is killed, which is
what the SIGKILL tests count.

Faults on request, for the next N requests (`fail_next`) or at random
(`fail_randomly`): 429 with `X-RateLimit-Reset`, 500, 503, 401, 403, 413, a slow
response, or a dropped connection. A dropped connection closes the socket after
reading the request and *before* recording it, so the batch was not delivered.

With an EventPoster (`--events-url` and `--events-key`), it also posts the Event
Webhook's events for every recipient of every request it accepts, signed, the way
SendGrid does (tests/fakes/sendgrid_webhook.py).

Run alone (the kill tests and the benchmark do):

    python -m tests.fakes.sendgrid_server --port 0 --record deliveries.tsv

It prints `listening on http://127.0.0.1:PORT` once ready and serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .sendgrid_webhook import EventPoster, WebhookKey

DEFAULT_KEY = "SG.fake-key-for-tests"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARG_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_BODY_BYTES = 30 * 1024 * 1024  # "The total size of your email ... must be less than 30MB"
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
FAULT_KINDS = ("429", "500", "503", "401", "403", "413", "slow", "drop")


@dataclass(frozen=True)
class Delivery:
    """One accepted recipient: who, and the custom args that came with them."""

    email: str
    edition: str
    batch: str
    message_id: str


@dataclass
class Faults:
    """Which requests fail, and how. Thread-safe: the server answers in many threads."""

    queued: list[str] = field(default_factory=list)
    probability: float = 0.0
    kinds: tuple[str, ...] = ("500", "429", "drop")
    slow_seconds: float = 2.0
    reset_in: float = 1.0  # 429: X-RateLimit-Reset is this many seconds from now
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def draw(self) -> str | None:
        with self.lock:
            if self.queued:
                return self.queued.pop(0)
            if self.probability and self.rng.random() < self.probability:
                return self.rng.choice(self.kinds)
        return None


class _Rejected(Exception):
    def __init__(self, status: int, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field_name = field_name


def _strings_problem(values: Any, limit: int) -> str | None:
    """Why an object of string values breaks SendGrid's rules, or None. Runs per
    personalization, so it is written for speed: most bodies are all ASCII."""
    if type(values) is not dict:
        return "must be an object"
    size = 0
    for key, value in values.items():
        if type(value) is not str:
            return f"{key} must be a string"
        size += len(key) + len(value)
    if size * 4 > limit:  # only then can the UTF-8 width matter
        size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
        if size > limit:
            return f"may not exceed {limit:,} bytes"
    return None


def _strings(values: Any, where: str, limit: int) -> None:
    problem = _strings_problem(values, limit)
    if problem:
        raise _Rejected(400, f"{where} {problem}", where)


def check(payload: Any) -> list[tuple[str, str, str]]:
    """Validate a Mail Send body the way SendGrid does; return (email, edition, batch) rows."""
    if not isinstance(payload, dict):
        raise _Rejected(400, "The request body must be a JSON object.")
    sender = payload.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        raise _Rejected(400, "The from object must be provided for every email send.", "from")
    content = payload.get("content")
    if "template_id" not in payload:
        if not isinstance(content, list) or not content:
            raise _Rejected(
                400,
                "Unless a valid template_id is provided, the content parameter is required.",
                "content",
            )
        types = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or not isinstance(part.get("value"), str)
                or not part["value"]
            ):
                raise _Rejected(
                    400,
                    "The content value must be a string at least one character in length.",
                    f"content.{i}.value",
                )
            types.append(part.get("type"))
        if (
            "text/html" in types
            and "text/plain" in types
            and (types.index("text/plain") > types.index("text/html"))
        ):
            raise _Rejected(
                400, "If present, text/plain must be first, followed by text/html.", "content"
            )
    categories = payload.get("categories", [])
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES:
        raise _Rejected(400, "You may not have more than 10 categories per request.", "categories")
    if len(set(categories)) != len(categories) or any(
        not isinstance(c, str) or len(c) > MAX_CATEGORY_LENGTH for c in categories
    ):
        raise _Rejected(
            400, "Categories must be unique strings of at most 255 characters.", "categories"
        )
    asm = payload.get("asm")
    if asm is not None and (not isinstance(asm, dict) or type(asm.get("group_id")) is not int):
        raise _Rejected(400, "The asm group_id must be an integer.", "asm.group_id")
    message_args = payload.get("custom_args") or {}
    if message_args:
        _strings(message_args, "custom_args", MAX_CUSTOM_ARG_BYTES)
    _check_headers(payload.get("headers"), "headers")
    subject_everywhere = isinstance(payload.get("subject"), str) and payload["subject"]

    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise _Rejected(400, "You must have at least one personalization.", "personalizations")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise _Rejected(
            400,
            "The personalization block is limited to 1000 personalizations per API request. "
            f"You have provided {len(personalizations)} personalizations.",
            "personalizations",
        )
    seen: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    for i, p in enumerate(personalizations):
        where = f"personalizations.{i}"  # for messages; cheap next to the rest
        if type(p) is not dict:
            raise _Rejected(400, "A personalization must be an object.", where)
        to = p.get("to")
        if not isinstance(to, list) or not to:
            raise _Rejected(
                400,
                "The to array is required for all personalization objects, "
                "and must have at least one email object with a valid email "
                "address.",
                f"{where}.to",
            )
        if not subject_everywhere and not (isinstance(p.get("subject"), str) and p["subject"]):
            raise _Rejected(
                400,
                "The subject is required. You can get around this requirement "
                "if you use a template with a subject defined or if every single "
                "personalization has a subject defined.",
                "subject",
            )
        args = p.get("custom_args")
        if args is not None:
            if _strings_problem(args, MAX_CUSTOM_ARG_BYTES):
                _strings(args, f"{where}.custom_args", MAX_CUSTOM_ARG_BYTES)
            args = {**message_args, **args} if message_args else args
        else:
            args = message_args
        subs = p.get("substitutions")
        if subs is not None and _strings_problem(subs, MAX_SUBSTITUTION_BYTES):
            _strings(subs, f"{where}.substitutions", MAX_SUBSTITUTION_BYTES)
        if "headers" in p:
            _check_headers(p["headers"], f"{where}.headers")
        edition, batch = str(args.get("edition", "")), str(args.get("batch", ""))
        for kind in ("to", "cc", "bcc"):
            for j, address in enumerate(p.get(kind) or ()):
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str) or "@" not in email:
                    raise _Rejected(
                        400, "Does not contain a valid address.", f"{where}.{kind}.{j}.email"
                    )
                name = address.get("name", "")
                if ("," in name or ";" in name) and not name.startswith('"'):
                    # SendGrid splits an unquoted name there and drops the message.
                    raise _Rejected(
                        400,
                        "The to.name, cc.name, and bcc.name cannot include commas or semicolons.",
                        f"{where}.{kind}.{j}.name",
                    )
                key = email.lower()
                if key in seen:
                    raise _Rejected(
                        400,
                        "Each email address in the personalization block "
                        "should be unique between to, cc, and bcc. We found the "
                        f"first duplicate instance of [{email}].",
                        where,
                    )
                seen.add(key)
                if kind == "to":
                    rows.append((email, edition, batch))
    if len(seen) > MAX_RECIPIENTS:
        raise _Rejected(
            400,
            "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
            "personalizations",
        )
    return rows


def _check_headers(headers: Any, where: str) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise _Rejected(400, f"{where} must be an object", where)
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise _Rejected(400, f"The {name} header is reserved and cannot be set.", where)
        if not isinstance(value, str):
            raise _Rejected(400, f"Header {name} must be a string.", where)


class FakeSendGrid:
    """The server. Start it with `start()` (or `with`), point SENDGRID_API_HOST at `url`."""

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        port: int = 0,
        record: Path | None = None,
        keep: bool = True,
        keep_bodies: bool = False,
        respond_delay: float = 0.0,
        events: EventPoster | None = None,
    ) -> None:
        self.api_key = api_key
        self.events = events
        self.record = record
        self.keep = keep
        self.keep_bodies = keep_bodies
        self.respond_delay = respond_delay
        self.faults = Faults()
        self.deliveries: list[Delivery] = []
        self.bodies: list[dict[str, Any]] = []
        self.rejections: list[tuple[int, str]] = []
        self.requests = 0
        self.accepted = 0  # requests
        self.recipients = 0  # personalizations' to-addresses in accepted requests
        self._lock = threading.Lock()
        self._record_fd: int | None = None
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeSendGrid:
        if self.events is not None:
            self.events.start()
        if self.record is not None:
            self._record_fd = os.open(self.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.events is not None:
            self.events.stop()
        if self._record_fd is not None:
            os.close(self._record_fd)
            self._record_fd = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------
    def fail_next(self, kind: str, count: int = 1) -> None:
        """The next `count` requests fail this way (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self.faults.lock:
            self.faults.queued.extend([kind] * count)

    def fail_randomly(
        self, probability: float, kinds: tuple[str, ...] = ("500", "429", "drop"), seed: int = 0
    ) -> None:
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}")
        with self.faults.lock:
            self.faults.probability = probability
            self.faults.kinds = kinds
            self.faults.rng = random.Random(seed)

    # -- what arrived ------------------------------------------------------------
    def emails(self) -> list[str]:
        with self._lock:
            return [d.email for d in self.deliveries]

    def _accept(self, rows: list[tuple[str, str, str]], body: dict[str, Any]) -> str:
        message_id = uuid.uuid4().hex[:22]
        with self._lock:
            self.accepted += 1
            self.recipients += len(rows)
            if self._record_fd is not None and rows:
                os.write(
                    self._record_fd,
                    "".join(f"{e}\t{ed}\t{b}\n" for e, ed, b in rows).encode(),
                )
            if self.keep:
                self.deliveries.extend(Delivery(e, ed, b, message_id) for e, ed, b in rows)
            if self.keep_bodies:
                self.bodies.append(body)
        if self.events is not None and rows:
            self.events.add(rows, message_id, body)
        return message_id


def read_record(path: Path) -> Iterator[Delivery]:
    """The deliveries a server started with `--record` wrote, in order."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            email, edition, batch = line.rstrip("\n").split("\t")
            yield Delivery(email, edition, batch, "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    fake: FakeSendGrid


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as api.sendgrid.com offers; every answer carries Content-Length.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(
        self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _error(self, status: int, message: str, field_name: str | None = None) -> None:
        fake = self.server.fake
        with fake._lock:
            fake.rejections.append((status, message))
        self._answer(status, {"errors": [{"message": message, "field": field_name, "help": None}]})

    def do_GET(self) -> None:
        self._error(405, "Method not allowed")

    do_PUT = do_DELETE = do_PATCH = do_GET

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with fake._lock:
            fake.requests += 1
        fault = fake.faults.draw()
        if fault == "drop":
            # Gone before the batch is recorded: the client must retry, and may.
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(fake.faults.slow_seconds)
        elif fault == "429":
            reset = math.ceil(time.time() + fake.faults.reset_in)
            self._answer(
                429,
                {"errors": [{"field": None, "message": "too many requests"}]},
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
            )
            return
        elif fault in ("500", "503"):
            self._error(int(fault), "Internal server error" if fault == "500" else "Unavailable")
            return
        elif fault in ("401", "403"):
            self._error(int(fault), "access forbidden" if fault == "403" else "unauthorized")
            return
        elif fault == "413":
            self._error(413, "Payload Too Large")
            return
        if self.headers.get("Authorization", "") != f"Bearer {fake.api_key}":
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            return
        if self.path.split("?", 1)[0] != "/v3/mail/send":
            self._error(404, f"no such endpoint {self.path}")
            return
        if length > MAX_BODY_BYTES:
            self._error(413, "Payload Too Large")
            return
        try:
            payload = json.loads(body)
            rows = check(payload)
        except ValueError:
            self._error(400, "Bad Request: the body is not JSON")
            return
        except _Rejected as exc:
            self._error(exc.status, exc.message, exc.field_name)
            return
        message_id = fake._accept(rows, payload)
        if fake.respond_delay:
            time.sleep(fake.respond_delay)
        sandbox = (payload.get("mail_settings") or {}).get("sandbox_mode") or {}
        # Sandbox mode validates and answers 200 without sending (SendGrid docs, Sandbox Mode).
        self._answer(200 if sandbox.get("enable") else 202, None, {"X-Message-Id": message_id})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--record", type=Path, help="append accepted recipients to this file")
    parser.add_argument("--api-key", default=os.environ.get("SENDGRID_API_KEY", DEFAULT_KEY))
    parser.add_argument(
        "--respond-delay",
        type=float,
        default=0.0,
        help="seconds between recording a batch and answering",
    )
    parser.add_argument("--events-url", help="post signed Event Webhook events here")
    parser.add_argument("--events-key", type=Path, help="PEM file of the ECDSA P-256 signing key")
    parser.add_argument("--events-kinds", default="processed,delivered")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-kinds", default="500,429,drop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeSendGrid(
        args.api_key,
        port=args.port,
        record=args.record,
        keep=False,
        respond_delay=args.respond_delay,
        events=EventPoster(
            args.events_url,
            WebhookKey.load(args.events_key),
            kinds=tuple(args.events_kinds.split(",")),
        )
        if args.events_url and args.events_key
        else None,
    )
    if args.fail_rate:
        fake.fail_randomly(args.fail_rate, tuple(args.fail_kinds.split(",")), args.seed)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    fake.start()
    print(f"listening on {fake.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    fake.stop()
    events = f", events posted: {fake.events.posted}" if fake.events else ""
    print(
        f"requests: {fake.requests}, accepted: {fake.accepted}, recipients: {fake.recipients}"
        + events,
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
