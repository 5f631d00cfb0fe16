"""Benchmark: SendGrid's events taken in by the webhook, and an edition's report.

Ingest: signed posts of 1,000 events (a mix of delivered, open, click, ...) to the web
app on uvicorn over 127.0.0.1, one after another, the way SendGrid posts them; beside
the bare INSERT of the same rows through the driver (no HTTP, no signature, no parsing).

Report: `digest.readership.report` for an edition of 100,000 recipients and 1,000,000
events; beside a plain `SELECT count(*)` of the same edition's events.

    .venv/bin/python bench/bench_events.py [--posts 20] [--recipients 100000] [--events 1000000]

SQLite in a temporary folder; with DIGEST_BENCH_DATABASE_URL, on PostgreSQL, in a schema
of its own.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from measure import Row, sample_newsroom
from sqlalchemy import create_engine, text

from digest import config, readership
from digest.send.sendgrid_events import KEY_VARIABLE, SIGNATURE_HEADER, TIMESTAMP_HEADER
from digest.store import Store
from digest.web import create_app

EDITION = "2025-12-05"
KINDS = ("processed", "delivered", "open", "open", "click", "delivered", "open", "click")


def _event(number: int, stamp: int, edition: str = EDITION) -> dict[str, object]:
    kind = KINDS[number % len(KINDS)]
    event: dict[str, object] = {
        "email": f"reader{number % 100_000:06d}@example.org",
        "timestamp": stamp,
        "event": kind,
        "sg_event_id": f"bench-{edition}-{number}",
        "sg_message_id": f"m{number // 1000}.filterdrecv.{number}",
        "edition": edition,
        "batch": str(number // 1000 + 1),
    }
    if kind == "click":
        event["url"] = f"https://news.example.org/story-{number % 9}?utm_content=more-{number % 9}"
    if kind == "open":
        event["sg_machine_open"] = number % 3 == 0
    return event


class _Server:
    def __init__(self, app: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@contextmanager
def _store(folder: Path) -> Iterator[tuple[config.Settings, Store]]:
    """The sample newsroom's settings and a store of its own: a SQLite file in `folder`,
    or on PostgreSQL a schema made for this run and dropped after it (the database
    may be one other benchmarks or tests use at the same time)."""
    settings = config.load(sample_newsroom(folder), env={"DIGEST_SECRET_KEY": "bench"})
    server = os.environ.get("DIGEST_BENCH_DATABASE_URL", "")
    schema = "bench_events_" + uuid.uuid4().hex[:8]
    if server:
        admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{folder / 'digest.db'}"
    store = Store.open(url)
    try:
        yield replace(settings, database_url=url), store
    finally:
        store.close()
        if server:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def ingest(posts: int) -> tuple[float, float]:
    """(events a second through the webhook, events a second by bare INSERT)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    stamp = int(time.time())
    bodies = [
        json.dumps([_event(p * 1000 + i, stamp) for i in range(1000)]).encode()
        for p in range(posts)
    ]
    with tempfile.TemporaryDirectory() as folder, _store(Path(folder)) as (settings, store):
        env = {**settings.env, KEY_VARIABLE: base64.b64encode(public).decode()}
        app = create_app(replace(settings, env=env), store)
        with _Server(app) as server, httpx.Client(timeout=60) as client:
            signed = []
            for body in bodies:
                signature = key.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
                signed.append(
                    {SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                     TIMESTAMP_HEADER: str(stamp), "Content-Type": "application/json"}
                )  # fmt: skip
            started = time.perf_counter()
            for body, headers in zip(bodies, signed, strict=True):
                answer = client.post(f"{server.url}/webhooks/sendgrid", content=body,
                                     headers=headers)  # fmt: skip
                assert answer.status_code == 200, answer.text
            webhook = posts * 1000 / (time.perf_counter() - started)
        bare = _bare_insert(store, posts)
    return webhook, bare


def _bare_insert(store: Store, posts: int) -> float:
    """The same rows, already made, in a table of the same columns: the driver alone."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE bench_bare (sg_event_id VARCHAR(100) PRIMARY KEY, edition "
                "VARCHAR(10), batch INTEGER, email VARCHAR(320), event VARCHAR(20), "
                "timestamp TIMESTAMP, received_at TIMESTAMP)"
            )
        )
    mark = "?" if store.dialect == "sqlite" else "%s"
    chunks = [
        [(f"b{p}-{i}", EDITION, p + 1, f"reader{i:06d}@example.org", "open", now, now)
         for i in range(1000)]
        for p in range(posts)
    ]  # fmt: skip
    started = time.perf_counter()
    for chunk in chunks:
        with store.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO bench_bare VALUES ({', '.join([mark] * 7)}) "
                "ON CONFLICT (sg_event_id) DO NOTHING",
                chunk,
            )
    seconds = time.perf_counter() - started
    with store.begin() as conn:
        conn.execute(text("DROP TABLE bench_bare"))
    return posts * 1000 / seconds


def report(recipients: int, events: int) -> tuple[float, float]:
    """(ms for the report, ms for SELECT count(*) of the edition's events)."""
    from digest.store.events import ReaderEvent, record_events

    with tempfile.TemporaryDirectory() as folder, _store(Path(folder)) as (_settings, store):
        now = datetime.now(UTC)
        with store.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO editions (name, send_at, window_start, window_end, subject, "
                    "preheader, status, updated_at, note, left_out) VALUES "
                    "(:n, :t, :t, :t, 's', 'p', 'sent', :t, '', '[]')"
                ),
                {"n": EDITION, "t": now.replace(tzinfo=None)},
            )
            conn.execute(
                text(
                    "INSERT INTO sends (edition, backend, state, recipients, batches, note, "
                    "created_at, updated_at) VALUES (:n, 'sendgrid', 'done', :r, :b, '', :t, :t)"
                ),
                {"n": EDITION, "r": recipients, "b": recipients // 1000,
                 "t": now.replace(tzinfo=None)},
            )  # fmt: skip
        kinds = ("delivered", "open", "open", "click", "processed", "open", "delivered", "click")
        for start in range(0, events, 20_000):
            record_events(
                store,
                [
                    ReaderEvent(
                        f"r{n}", EDITION, n % recipients // 1000 + 1,
                        f"reader{n % recipients:06d}@example.org", kinds[n % len(kinds)], now,
                        slot="more" if n % 8 == 3 else None, position=n % 7 + 1 if n % 8 == 3
                        else None, story_id=n % 7 + 1 if n % 8 == 3 else None,
                        machine_open=(n % 3 == 0) if kinds[n % len(kinds)] == "open" else None,
                    )
                    for n in range(start, min(events, start + 20_000))
                ],
            )  # fmt: skip
        with store.begin() as conn:
            conn.execute(text("ANALYZE"))
        timings, bare = [], []
        for _ in range(3):
            started = time.perf_counter()
            figures = readership.report(store, EDITION)
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            with store.begin() as conn:
                counted = conn.execute(
                    text("SELECT count(*) FROM sendgrid_events WHERE edition = :n"),
                    {"n": EDITION},
                ).scalar()
            bare.append(time.perf_counter() - started)
        assert figures is not None and counted == events
        print(
            f"report of {recipients:,} recipients, {events:,} events: "
            f"{figures.unique_clicks:,} unique clicks, {figures.unique_opens:,} unique opens"
        )
    return min(timings) * 1000, min(bare) * 1000


def rows(posts: int = 20, recipients: int = 100_000, events: int = 1_000_000) -> list[Row]:
    webhook, bare = ingest(posts)
    print(f"webhook: {webhook:,.0f} events/s; bare INSERT: {bare:,.0f} events/s")
    report_ms, count_ms = report(recipients, events)
    print(f"report: {report_ms:,.0f} ms; SELECT count(*): {count_ms:,.0f} ms")
    return [
        Row("SendGrid events, webhook (posts of 1,000)", webhook, bare, "events/s",
            "bare INSERT of the same rows", goal=">= 5,000 events/s"),
        Row(f"report, {recipients:,} recipients / {events:,} events", report_ms, count_ms,
            "ms", "SELECT count(*) of the edition's events", higher_is_better=False),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    arguments = parser.parse_args()
    rows(arguments.posts, arguments.recipients, arguments.events)


if __name__ == "__main__":
    main()
