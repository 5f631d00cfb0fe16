"""Benchmark: collect 200 feeds that each answer after 250 ms (a real site's latency),
from 20 sites (servers on 20 ports of 127.0.0.1, in a process of their own) of 10 feeds
each; then the same collect again, when every feed answers 304 Not Modified.

Beside them, in the same run: the bare reference of the issue (100 threads, one
httpx.Client, feedparser.parse on each body; nothing stored, no limits), the floor any
collect of these feeds can reach on this machine.

    .venv/bin/python bench/bench_collect_feeds.py [--feeds 200] [--latency 0.25]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure import ROOT, Row, quick, sample_newsroom

SERVER = r"""
import sys, time, hashlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
feed = open(sys.argv[1], "rb").read()
latency = float(sys.argv[2])

class Feeds(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(latency)
        n = self.path.strip("/").split(".")[0]
        body = feed.replace(b"https://", b"https://" + n.encode() + b".")
        tag = '"' + hashlib.md5(body).hexdigest() + '"'
        if self.headers.get("If-None-Match") == tag:
            self.send_response(304)
            self.send_header("ETag", tag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("ETag", tag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

import threading
servers = []
for _ in range(int(sys.argv[3])):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feeds)
    server.daemon_threads = True
    servers.append(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
threading.Event().wait()
"""


def _serve(latency: float, origins: int) -> tuple[subprocess.Popen[str], list[str]]:
    """One process serving the feeds on `origins` ports: that many sites on 127.0.0.1."""
    feed = ROOT / "examples" / "sample-newsroom" / "feed.xml"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(feed), str(latency), str(origins)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ports = server.stdout.readline().split()
    return server, [f"http://127.0.0.1:{port}" for port in ports]


def measure(feeds: int, latency: float) -> dict[str, float]:
    import logging

    import feedparser
    import httpx

    from digest import config
    from digest.collect import collect_all
    from digest.store import Store

    logging.getLogger("digest").addHandler(logging.NullHandler())
    logging.getLogger("digest").propagate = False
    # 20 sites of 10 feeds each (a site's section feeds share its server).
    server, bases = _serve(latency, origins=max(1, feeds // 10))
    urls = [f"{bases[n % len(bases)]}/{n}.xml" for n in range(feeds)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = config.load(sample_newsroom(Path(folder)), env={"DIGEST_SECRET_KEY": "b"})
            store = Store.open(f"sqlite:///{folder}/bench.db")
            started = time.perf_counter()
            first = collect_all(settings, store, feeds=urls, pageviews=[])
            collect_s = time.perf_counter() - started
            started = time.perf_counter()
            again = collect_all(settings, store, feeds=urls, pageviews=[])
            again_s = time.perf_counter() - started
            store.close()
        assert not first.failed_sources and len(again.unchanged_sources) == feeds

        started = time.perf_counter()
        with httpx.Client(limits=httpx.Limits(max_connections=100), timeout=30) as client:

            def bare(url: str) -> int:
                return len(feedparser.parse(client.get(url).content).entries)

            with ThreadPoolExecutor(100) as pool:
                entries = sum(pool.map(bare, urls))
        bare_s = time.perf_counter() - started
        assert entries == feeds * 11
    finally:
        server.kill()
    return {"collect": collect_s, "again": again_s, "bare": bare_s, "stories": first.new}


def rows() -> list[Row]:
    feeds, latency = (20, 0.25) if quick() else (200, 0.25)
    figures = measure(feeds, latency)
    print(
        f"collect {feeds} feeds at {latency * 1000:.0f} ms: {figures['collect']:.2f} s "
        f"({figures['stories']:,.0f} stories); again, all 304: {figures['again']:.2f} s; "
        f"bare 100 threads + feedparser: {figures['bare']:.2f} s",
        flush=True,
    )
    return [
        Row(
            f"collect {feeds} feeds, {latency * 1000:.0f} ms each",
            figures["collect"],
            figures["bare"],
            "s",
            "100 threads + feedparser",
            higher_is_better=False,
            goal="< 2 s",
        ),
        Row(
            "re-collect, all unchanged (304)",
            figures["again"],
            figures["bare"],
            "s",
            "100 threads + feedparser",
            higher_is_better=False,
            goal="< 0.5 s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.25)
    options = parser.parse_args()
    figures = measure(options.feeds, options.latency)
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
