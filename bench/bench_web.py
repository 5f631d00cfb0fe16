"""Benchmark: the public endpoints under load, beside `/healthz` with the same client.

`digest web` runs as its own process on 127.0.0.1 (uvicorn, as an operator runs it)
over a sample newsroom with `--readers` subscribers, its store a SQLite file or, with
`--database postgresql+psycopg://...`, a fresh schema in that PostgreSQL database. The
bundled load client (bench/loadclient.py: 16 kept-alive connections by default, closed
loop) then measures, one after the other:

- `GET /healthz`: the reference, the cheapest answer the app gives;
- one-click unsubscribe POSTs (RFC 8058 body), one per reader, every one a new
  suppression;
- SendGrid event webhook posts, signed as SendGrid signs them, in three mixes:
  bounce-heavy (every event a bounce: a suppression each), delivery events only
  (processed/delivered of a send's batches, kept for the in-doubt rules), and half
  and half; reported in events per second.

    .venv/bin/python bench/bench_web.py [--readers 20000] [--connections 16]
        [--events-per-post 200] [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Its lines in `make bench` (rows()): 10,000 readers on SQLite, then on PostgreSQL; each
webhook mix beside the same posts verified, parsed and written in one transaction in
the benchmark's own process (no HTTP, no digest), the floor of that work.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from bench_send import DAY, database
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from loadclient import Load, request, run
from measure import DIGEST, ROOT, Row, Skip, postgres_url, quick, sample_newsroom

from digest import config, jobs
from digest.models import Subscriber
from digest.subscribers import unsubscribe_token

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Webhook:
    """An ECDSA P-256 key, used as SendGrid uses its own to sign the event posts."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.verification_key = base64.b64encode(der).decode()

    def signed(self, events: list[dict[str, object]]) -> tuple[bytes, str, bytes]:
        """(body, timestamp, signature) of one post of `events`."""
        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        return body, stamp, self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))

    def post(self, body: bytes, stamp: str, signature: bytes) -> bytes:
        return request(
            "POST",
            "/webhooks/sendgrid",
            body,
            {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            },
        )

    def bare(self, posts: list[tuple[bytes, str, bytes]]) -> Load:
        """The reference: each post's signature verified, its JSON parsed and its events
        written in one transaction (an in-memory SQLite table), here, no HTTP."""
        public = self.key.public_key()
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE events (id TEXT PRIMARY KEY, email TEXT, event TEXT)")
        count = 0
        started = time.perf_counter()
        for body, stamp, signature in posts:
            public.verify(signature, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            events = json.loads(body)
            with conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
                    [(e["sg_event_id"], e["email"], e["event"]) for e in events],
                )
            count += len(events)
        seconds = time.perf_counter() - started
        conn.close()
        return Load(count, seconds, [seconds / max(1, len(posts))] * len(posts), {})


def events_for(mix: str, first: int, count: int) -> list[dict[str, object]]:
    """`count` events about readers first.. (bounce-heavy, delivery or mixed)."""
    now = int(time.time())
    events: list[dict[str, object]] = []
    for i in range(first, first + count):
        email = f"reader{i:07d}@example{i % 97}.com"
        common = {"email": email, "timestamp": now, "sg_event_id": f"ev-{mix}-{i}"}
        bounce = mix == "bounce" or (mix == "mixed" and i % 2 == 0)
        if bounce:
            events.append({**common, "event": "bounce", "type": "bounce", "reason": "550 no"})
        else:
            kind = "delivered" if i % 3 else "processed"
            events.append({**common, "event": kind, "edition": DAY.isoformat(), "batch": "7"})
    return events


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used so far: what a request
    costs it, which a busy machine disturbs far less than the wall clock."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(config_path: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the server writes it while it runs; never a pipe: it could block)
    server = subprocess.Popen(
        [DIGEST, "web", "--host", "127.0.0.1", "--port", str(port), "-c", str(config_path)],
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"digest web failed:\n{log.read().decode(errors='replace')}")
        time.sleep(0.2)
    server.kill()
    raise SystemExit("digest web did not answer /healthz within 60 s")


def measure(
    readers: int, connections: int, per_post: int, work: Path, server_url: str | None
) -> dict[str, Load]:
    """The loads of one `digest web` on a fresh store (SQLite, or a schema on the
    PostgreSQL `server_url`): "healthz", "unsubscribe" and "webhook MIX" (the last in
    events), and "bare MIX": the same posts checked in this process (the reference)."""
    work.mkdir(parents=True, exist_ok=True)
    hook = Webhook()
    loads: dict[str, Load] = {}
    with (
        tempfile.TemporaryDirectory(dir=work) as tmp,
        database(Path(tmp), server_url) as url,
    ):
        folder = Path(tmp)
        config_path = sample_newsroom(folder)
        env = {
            **os.environ,
            "DIGEST_DATABASE_URL": url,
            "DIGEST_SECRET_KEY": SECRET,
            "SENDGRID_WEBHOOK_VERIFICATION_KEY": hook.verification_key,
        }
        store = jobs.open_store(config.load(config_path, env=env))
        emails = [f"reader{i:07d}@example{i % 97}.com" for i in range(readers)]
        for start in range(0, len(emails), 10_000):
            store.subscribers.import_subscribers(
                [Subscriber(e, f"Reader {e[6:13]}") for e in emails[start : start + 10_000]]
            )
        store.close()

        port = free_port()
        server = serve(config_path, env, port)
        where = "PostgreSQL" if server_url else "SQLite"
        try:
            healthz = [request("GET", "/healthz")] * readers
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            unsubscribes = [
                request(
                    "POST",
                    f"/unsubscribe/{unsubscribe_token(SECRET.encode(), email)}",
                    b"List-Unsubscribe=One-Click",
                    form,
                )
                for email in emails
            ]
            posts = {
                mix: [hook.signed(events_for(mix, first, per_post))
                      for first in range(0, readers, per_post)]
                for mix in ("bounce", "delivery", "mixed")
            }  # fmt: skip
            run("127.0.0.1", port, healthz[:500], connections)  # warm-up

            def load(what: str, requests: list[bytes]) -> Load:
                """`requests` sent; the server's CPU per request kept with the load."""
                cpu = server_cpu(server.pid)
                loads[what] = run("127.0.0.1", port, requests, connections)
                loads[what].cpu_ms = (server_cpu(server.pid) - cpu) * 1000 / len(requests)
                return loads[what]

            reference = load("healthz", healthz)
            print(reference.line(f"GET /healthz ({where}, reference)"), flush=True)
            leave = load("unsubscribe", unsubscribes)
            print(leave.line(f"one-click unsubscribe POST ({where})"), flush=True)
            _check(leave, "one-click unsubscribe")
            for mix, signed in posts.items():
                got = load(f"posts {mix}", [hook.post(*one) for one in signed])
                _check(got, f"webhook, {mix}")
                events = Load(got.requests * per_post, got.seconds, got.latencies, {})
                events.cpu_ms = got.cpu_ms / per_post
                loads[f"webhook {mix}"] = events
                bare = loads[f"bare {mix}"] = hook.bare(signed)
                print(
                    events.line(f"webhook, {mix} posts of {per_post} ({where})", "events")
                    + f"; {got.per_second:,.0f} posts/s; verify + parse + one transaction "
                    f"in this process: {bare.per_second:,.0f} events/s",
                    flush=True,
                )
            print(
                f"ratios to /healthz ({where}): unsubscribe "
                f"{leave.per_second / reference.per_second:.2f}",
                flush=True,
            )
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return loads


def rows() -> list[Row]:
    """The one-click unsubscribe and the webhook's bounce-heavy and mixed posts, on SQLite
    and then on PostgreSQL (one line says so if there is none)."""
    readers, per_post = (300, 50) if quick() else (10_000, 200)
    work = ROOT / "var" / "bench"
    table: list[Row] = []
    for where in ("SQLite", "PostgreSQL"):
        try:
            server_url = postgres_url() if where == "PostgreSQL" else None
        except Skip as why:
            print(f"web on PostgreSQL: not run: {why}", flush=True)
            break
        loads = measure(readers, 16, per_post, work, server_url)
        leave, healthz = loads["unsubscribe"], loads["healthz"]
        table.append(
            Row(f"one-click unsubscribe POST, 16 connections, {where}, {readers:,} readers "
                f"(p99 {leave.percentile(99):.0f} ms; /healthz p99 "
                f"{healthz.percentile(99):.0f} ms; server CPU {leave.cpu_ms:.2f} ms a request, "
                f"/healthz {healthz.cpu_ms:.2f} ms)", leave.per_second, healthz.per_second,
                "requests/s", "`/healthz`, same client", goal="≥ 1,000/s, p99 < 50 ms")
        )  # fmt: skip
        for mix, name in (("bounce", "bounce-heavy"), ("mixed", "mixed")):
            events, bare = loads[f"webhook {mix}"], loads[f"bare {mix}"]
            table.append(
                Row(f"event webhook, {name} posts of {per_post}, {where} ({events.requests:,} "
                    f"events; p99 {events.percentile(99):.0f} ms a post; server CPU "
                    f"{events.cpu_ms * 1000:.0f} µs an event)", events.per_second,
                    bare.per_second, "events/s", "verify + parse + one transaction",
                    goal="≥ 20,000 events/s")
            )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events-per-post", type=int, default=200)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--database", help="a PostgreSQL URL: the store in a fresh schema")
    args, _others = parser.parse_known_args()
    measure(args.readers, args.connections, args.events_per_post, args.work, args.database)


def _check(load: Load, what: str) -> None:
    if set(load.statuses) != {200}:
        raise SystemExit(f"{what}: answers other than 200: {load.statuses}")


if __name__ == "__main__":
    main()
