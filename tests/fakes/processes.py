"""The send as an operator runs it, for the process-level fault tests: `digest send` and
`digest web` as processes of their own, our SendGrid server as another (so it outlives
every kill, and its record file is what recipients really got).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from digest import config
from digest.store import Store

from .newsroom import EDITION, SECRET, copy_newsroom, drafted, write_subscribers
from .sendgrid_server import DEFAULT_KEY

ROOT = Path(__file__).resolve().parent.parent.parent


class Newsroom:
    """A sample newsroom with `recipients` subscribers, its own ledger and environment."""

    def __init__(
        self,
        folder: Path,
        database_url: str | None = None,
        batch_size: int = 1000,
        recipients: int = 20_000,
        delivery: str = "",
    ) -> None:
        """delivery: more `[delivery]` settings, as TOML lines."""
        self.folder = folder
        self.config = copy_newsroom(folder)
        toml = self.config.read_text()
        toml = toml.replace("batch_size = 1000", f"batch_size = {batch_size}")
        if delivery:
            toml = toml.replace("[delivery]\n", f"[delivery]\n{delivery.strip()}\n", 1)
        self.config.write_text(toml)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))},
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_DATABASE_URL": database_url or f"sqlite:///{folder / 'digest.db'}",
            "DIGEST_RETRY_BASE_DELAY": "0.01",
            "SENDGRID_API_KEY": DEFAULT_KEY,
            # As a newsroom on SendGrid sets it: a resume that finds no send yet (the
            # first run died before its snapshot) starts one on SendGrid too.
            "DIGEST_BACKEND": "sendgrid",
        }
        drafted(config.load(self.config, env=self.env))
        self.emails = write_subscribers(folder / "readers.csv", recipients)
        imported = self.digest("subscribers", "import", str(folder / "readers.csv"))
        assert imported.returncode == 0, imported.stderr

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "digest.cli", *args, "--config", str(self.config)]

    def digest(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str, output: bool = False) -> subprocess.Popen[str]:
        """`digest ARGS` in the background; with `output`, its stdout and stderr piped."""
        pipe = subprocess.PIPE if output else subprocess.DEVNULL
        return subprocess.Popen(
            self.command(*args), env=self.env, stdout=pipe, stderr=pipe, text=True
        )

    def report(self) -> dict[str, object]:
        shown = self.digest("sends", EDITION, "--json")
        assert shown.returncode == 0, shown.stderr
        (report,) = json.loads(shown.stdout)
        return report  # type: ignore[no-any-return]

    def store(self) -> Store:
        return Store.open(self.env["DIGEST_DATABASE_URL"], upgrade=False)

    def batch_members(self) -> dict[int, list[str]]:
        from sqlalchemy import select

        from digest.store import send_batches

        store = self.store()
        try:
            with store.begin() as conn:
                rows = conn.execute(select(send_batches.c.number, send_batches.c.recipients))
                return {n: [e for e, _name in json.loads(r)] for n, r in rows}
        finally:
            store.close()

    def web(self, verification_key: str) -> subprocess.Popen[str]:
        """`digest web` on a free port, with the webhook's key; its URL is `.url`."""
        port = free_port()
        process = subprocess.Popen(
            [*self.command("web"), "--port", str(port)],
            env={**self.env, "SENDGRID_WEBHOOK_VERIFICATION_KEY": verification_key},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "digest web ended"
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "digest web did not start"
                time.sleep(0.1)
        process.url = url  # type: ignore[attr-defined]
        return process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(record: Path, *options: str) -> subprocess.Popen[str]:
    """Our SendGrid server as a process of its own, recording what it accepts to `record`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sendgrid_server", "--port", "0",
         "--record", str(record), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def server_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on "), line
    return line.split()[-1]


def lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def kill_when(
    process: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60
) -> bool:
    """SIGKILL the process once ready() says so; False if it finished first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if ready() or time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    return False


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)
