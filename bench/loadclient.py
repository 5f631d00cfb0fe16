"""A small HTTP/1.1 load client: N kept-alive connections on asyncio streams, each
sending the next of a list of ready-made requests as soon as its last one is answered
(closed loop, like wrk), with every request's latency.

Bundled so the benchmarks need nothing from outside the virtualenv; it costs the
client about as much CPU per request as the server's cheapest endpoint does, which
is why every figure is printed beside `/healthz` measured with this same client.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

#: Seconds a request may wait for its answer (or a connection to open) before the load
#: fails with TimeoutError: a benchmark never waits forever on a server that hangs.
TIMEOUT = 30.0


@dataclass
class Load:
    requests: int
    seconds: float
    latencies: list[float]  # seconds, one per request
    statuses: dict[int, int]  # HTTP status -> how many
    cpu_ms: float = 0.0  # the server's CPU per request, when the benchmark measured it

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        """Milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    def line(self, what: str, unit: str = "requests") -> str:
        return (
            f"{what}: {self.per_second:,.0f} {unit}/s, p50 {self.percentile(50):.1f} ms, "
            f"p99 {self.percentile(99):.1f} ms ({self.requests:,} in {self.seconds:.2f} s, "
            f"median {statistics.median(self.latencies) * 1000:.1f} ms, statuses {self.statuses})"
            + (f"; server CPU {self.cpu_ms:.3f} ms each" if self.cpu_ms else "")
        )


def request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """One raw HTTP/1.1 request, kept alive."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    host: str, port: int, requests: Sequence[bytes], next_index: list[int], load: Load
) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    try:
        while True:
            i = next_index[0]
            if i >= len(requests):
                return
            next_index[0] = i + 1
            started = time.perf_counter()
            writer.write(requests[i])
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
            load.latencies.append(time.perf_counter() - started)
            load.statuses[status] = load.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _run(host: str, port: int, requests: Sequence[bytes], connections: int) -> Load:
    load = Load(len(requests), 0.0, [], {})
    next_index = [0]
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(host, port, requests, next_index, load) for _ in range(connections))
    )
    load.seconds = time.perf_counter() - started
    return load


def run(host: str, port: int, requests: Sequence[bytes], connections: int = 16) -> Load:
    """Send every request over `connections` connections; what it took."""
    return asyncio.run(_run(host, port, requests, connections))
