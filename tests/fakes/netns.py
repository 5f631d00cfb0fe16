"""Separate network hosts on one machine: Linux network namespaces joined by a bridge.

`Network(hosts)` makes, with iproute2 (`ip`, as root), one namespace per host name,
each with its own loopback and one veth pair whose other end joins a bridge in the
machine's own namespace, all on one private /24: the machine is `.1`, the hosts `.2`,
`.3`, ... . A process started with `run(host, ...)` sees only its host's interfaces:
what it reaches, it reaches over the veth, as a process on another machine would.

Names carry a random tag, so two runs at once do not collide, and the subnet is one
the machine does not route yet. `close()` kills whatever still runs in the
namespaces and deletes them and the bridge; it is safe to call after a failure
part-way through `__init__` and more than once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


def usable() -> str:
    """Why namespaces cannot be made here, or "" if they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (.ci/run installs it)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return ""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.128.0.0/9 that no address or route of the machine is in."""
    shown = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    shown += subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    rng = random.Random()
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{rng.randrange(128, 255)}.{rng.randrange(256)}.0/24")
        if f"10.{str(net.network_address).split('.')[1]}." not in shown:
            return net
    raise RuntimeError("no free private /24 found for the test network")


class Network:
    def __init__(self, hosts: Sequence[str]) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"dg{self.tag}"
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        self.gateway = str(addresses[0])  # the machine itself, on the bridge
        self.address: dict[str, str] = {}
        self.namespace: dict[str, str] = {}
        self.processes: list[subprocess.Popen[str]] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for number, host in enumerate(hosts, start=1):
                self._add_host(host, number, str(addresses[number]))
        except BaseException:
            self.close()
            raise

    def _add_host(self, host: str, number: int, address: str) -> None:
        namespace = f"dg{self.tag}-{host}"
        outside, inside = f"dg{self.tag}o{number}", f"dg{self.tag}i{number}"
        _ip("netns", "add", namespace)
        self.namespace[host] = namespace
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("link", "set", inside, "netns", namespace)
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "set", inside, "name", "eth0"),
            ("addr", "add", f"{address}/24", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
        ):
            _ip("-n", namespace, *args)
        self.address[host] = address

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace[host], *argv]

    def run(
        self,
        host: str | None,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | Path | None = subprocess.DEVNULL,
        cwd: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start `argv` on `host` (None: the machine itself); killed by close() if still up.

        stdout: subprocess.PIPE to read it, a path to write it (and stderr) to a file.
        """
        command = list(argv) if host is None else self.command(host, argv)
        if isinstance(stdout, Path):
            with stdout.open("w") as handle:
                process = subprocess.Popen(
                    command, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True, cwd=cwd
                )
        else:
            process = subprocess.Popen(
                command, env=env, stdout=stdout, stderr=subprocess.DEVNULL, text=True, cwd=cwd
            )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
        for namespace in self.namespace.values():
            # Anything started in it some other way: gone before the namespace is.
            pids = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", namespace)
        self.namespace.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", self.bridge)  # its veth ends went with their namespaces

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def namespaces_left(tag: str) -> list[str]:
    """The namespaces named for this tag that still exist (none after close())."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in names.splitlines() if line.startswith(f"dg{tag}-")]


class Pace:
    """How fast recipients reach the fake SendGrid server: its record file's line count,
    sampled every few milliseconds while the test waits."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.samples: list[tuple[float, int]] = []

    def count(self) -> int:
        try:
            return self.record.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def sample(self) -> int:
        count = self.count()
        if not self.samples or count != self.samples[-1][1]:
            self.samples.append((time.monotonic(), count))
        return count

    def watch(self, until: float, every: float = 0.005) -> Iterator[int]:
        """Sample until the monotonic time `until`, yielding each count."""
        while time.monotonic() < until:
            yield self.sample()
            time.sleep(every)

    def rate(self, until: float | None = None) -> float:
        """Recipients a second from the first batch seen to the last (before `until`).

        The rate cap starts batches one after another, each its size over the rate
        after the one before (digest/send/ratecap.py); so what arrived after the
        first batch, over the time since it arrived, is the rate the send kept.
        """
        samples = [s for s in self.samples if s[1] > 0 and (until is None or s[0] <= until)]
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        return (last - first) / (last_at - first_at)

    def profile(self) -> str:
        """Recipients delivered by each half second since the first: for a failure's message."""
        start = self.samples[0][0]
        marks: dict[int, int] = {}
        for at, count in self.samples:
            marks[int((at - start) * 2)] = count
        return ", ".join(f"{key / 2:.1f}s: {count}" for key, count in sorted(marks.items()))
