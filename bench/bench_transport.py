"""Benchmark: one 1,000-recipient Mail Send body posted through the official client
(python-http-client under SendGridAPIClient) and through a kept-alive httpx client.

Why digest/send/sendgrid.py sends batches with httpx: the library opens a new
connection per request and formats the whole body into a debug-log string before
checking the log level. Both post the same bytes to our SendGrid-compatible server,
run as its own process on 127.0.0.1; prints milliseconds per request (median).

    .venv/bin/python bench/bench_transport.py [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from bench_send import KEY, fake_server  # noqa: E402
from sendgrid import SendGridAPIClient  # noqa: E402


def body(recipients: int = 1000) -> dict[str, object]:
    """A body shaped like ours: one personalization per recipient, a 60 KB edition."""
    url = "https://news.example.org/unsubscribe/cmVhZGVyQGV4YW1wbGUub3Jn.AAAAAAAAAAAAAAAAAAAAAA"
    return {
        "personalizations": [
            {
                "to": [{"email": f"reader{i}@example.org", "name": f"Reader {i}"}],
                "substitutions": {
                    "%%greeting%%": f"Good morning, Reader {i}.",
                    "%%greeting_text%%": f"Good morning, Reader {i}.",
                    "%%unsubscribe_url%%": url,
                },
                "headers": {
                    "List-Unsubscribe": f"<{url}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                "custom_args": {"edition": "2025-12-05", "batch": "1"},
            }
            for i in range(recipients)
        ],
        "from": {"email": "digest@news.example.org"},
        "subject": "The digest",
        "content": [
            {"type": "text/plain", "value": "x" * 4000},
            {"type": "text/html", "value": "<p>" + "y" * 60000 + "</p>"},
        ],
    }


def timed(post: object, requests: int) -> float:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        post()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    server, url = fake_server()
    payload = body()
    encoded = json.dumps(payload).encode()
    try:
        library = SendGridAPIClient(api_key=KEY, host=url)
        kept = httpx.Client(
            base_url=url,
            headers={**library.client.request_headers, "Content-Type": "application/json"},
        )
        lib_ms = timed(lambda: library.client.mail.send.post(request_body=payload), args.requests)
        httpx_ms = timed(lambda: kept.post("/v3/mail/send", content=encoded), args.requests)
        dumps_ms = timed(lambda: json.dumps(payload).encode(), args.requests)
    finally:
        server.terminate()
        server.wait()
    print(f"official client: {lib_ms:.1f} ms per request (it serialises the body itself)")
    print(
        f"httpx, kept-alive: {httpx_ms:.1f} ms per request + {dumps_ms:.1f} ms json.dumps "
        f"= {httpx_ms + dumps_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
