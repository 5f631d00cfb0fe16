"""One send shared by `digest worker` processes on separate network hosts.

The test makes its own network (tests/fakes/netns.py): a Linux network namespace per
host, each joined to a bridge by a veth pair on a private /24. Three worker hosts,
and one for our SendGrid server, reached at that host's address only. The
machine's PostgreSQL listens on 127.0.0.1, which no other host can reach, so a TCP
relay on the machine's side of the bridge (tests/fakes/tcprelay.py) carries the
workers' connections to it, as a database server's own address would.

The operator starts the send on the machine itself (`digest send`, which sends
too); the three workers join it over the network. Half way through, once host 1
has been sending, its worker is SIGKILLed. Then: every reader outside the batches
left in doubt got the edition exactly once (counted at the SendGrid server), the
batches in doubt
are the dead host's (at most its `concurrency`), each delivered whole or not at
all; the send as a whole kept to `rate_per_second` within 10% (the bucket is in
PostgreSQL, shared by all: ratecap.py); and `--resume --retry-in-doubt` finishes it.
Most of its time goes to starting `digest` processes.
The namespaces go whatever happens (the fixture's finalizer).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need
from fakes import netns
from fakes.newsroom import EDITION
from fakes.processes import ROOT, Newsroom
from fakes.sendgrid_server import read_record

pytestmark = pytest.mark.slow

RECIPIENTS = 1200
BATCH = 50
RATE = 150.0  # recipients a second for the send in all: well below what 4 senders can do,
# even on a machine as loaded as a CI runner running the suite with -n 2
CONCURRENCY = 2
HOSTS = ("host1", "host2", "host3")


@pytest.fixture
def network() -> Iterator[netns.Network]:
    need(not netns.usable(), netns.usable())
    net = netns.Network(["sendgrid", *HOSTS])
    try:
        yield net
    finally:
        net.close()
        assert netns.namespaces_left(net.tag) == []


def _listening(process: subprocess.Popen[str], what: str) -> str:
    """What a server printed once ready: `listening on WHERE`."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on "), f"{what}: {line!r}"
    return line.split()[-1]


def _relay(
    net: netns.Network, host: str | None, listen: str, target: str, log: Path | None = None
) -> str:
    """A TCP relay on `host` from `listen` (an address; any port) to `target` host:port;
    with `log`, a line there for each connection it accepts."""
    target_host, target_port = target.rsplit(":", 1)
    relay = net.run(
        host,
        [sys.executable, "-m", "tests.fakes.tcprelay", listen, "0", target_host, target_port,
         *([str(log)] if log else [])],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    return _listening(relay, f"relay to {target}")


def test_workers_on_separate_hosts_share_a_send_and_its_rate_when_one_dies(
    tmp_path: Path, pg_url: str, network: netns.Network
) -> None:
    net = network
    record = tmp_path / "delivered.tsv"
    server = net.run(
        "sendgrid",
        [sys.executable, "-m", "tests.fakes.sendgrid_server", "--port", "0",
         "--record", str(record)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    local = _listening(server, "SendGrid server").removeprefix("http://")
    # Each host reaches SendGrid through its own port, so we see when host1 starts sending.
    talked = {host: tmp_path / f"{host}-sendgrid.log" for host in ("operator", *HOSTS)}
    sendgrid = {
        host: "http://" + _relay(net, "sendgrid", net.address["sendgrid"], local, log)
        for host, log in talked.items()
    }
    database = _relay(net, None, net.gateway, "127.0.0.1:5432")
    assert "@127.0.0.1:5432/" in pg_url
    remote_url = pg_url.replace("@127.0.0.1:5432/", f"@{database}/")

    room = Newsroom(
        tmp_path / "newsroom",
        database_url=pg_url,
        batch_size=BATCH,
        recipients=RECIPIENTS,
        # A dead worker's batch stays `sending`: the operator's send waits for it at
        # most retry_attempts x (request_timeout + retry_max_delay) = 2.5 s.
        delivery=f"""
            rate_per_second = {RATE}
            concurrency = {CONCURRENCY}
            retry_attempts = 1
            request_timeout = 2
            retry_max_delay = 0.5
            event_wait_seconds = 0
        """.replace("    ", ""),
    )
    room.env["SENDGRID_API_HOST"] = sendgrid["operator"]
    remote_env = {**room.env, "DIGEST_DATABASE_URL": remote_url}
    workers = {
        host: net.run(
            host,
            room.command("worker", "--poll", "0.1"),
            env={**remote_env, "SENDGRID_API_HOST": sendgrid[host]},
            stdout=tmp_path / f"{host}.log",
        )
        for host in HOSTS
    }
    pace = netns.Pace(record)
    operator = room.start("send", EDITION, output=True)
    killed, killed_at = False, 0.0
    deadline = time.monotonic() + 120  # a loaded machine starts `digest send` slowly
    for count in pace.watch(until=deadline):
        # Mid-send for host1: it has been sending, and half has gone out in all.
        if not killed and count >= RECIPIENTS // 2 and talked["host1"].exists():
            workers["host1"].send_signal(signal.SIGKILL)
            workers["host1"].wait()
            killed_at = time.monotonic()
            killed = True
        if operator.poll() is not None:
            break
    out, err = operator.communicate(timeout=30)
    assert killed, f"the send ended before half went out: {out}{err}"
    for host in HOSTS[1:]:
        workers[host].send_signal(signal.SIGTERM)
    for host in HOSTS[1:]:
        assert workers[host].wait(timeout=30) == 0, (tmp_path / f"{host}.log").read_text()

    # The hosts that lived took their share, over the network.
    for host in HOSTS[1:]:
        log = (tmp_path / f"{host}.log").read_text()
        sent = int(log.rsplit("worker: ", 1)[1].split()[0].replace(",", ""))
        assert sent > 0, f"{host} sent nothing: {log}"

    # The dead host's batches are in doubt: at most its concurrency, each delivered
    # whole or not at all; everyone else got the edition exactly once.
    report = room.report()
    assert operator.returncode == 1 and report["state"] == "incomplete", out + err
    doubtful: list[int] = report["in_doubt_batches"]  # type: ignore[assignment]
    assert len(doubtful) <= CONCURRENCY and report["failed"] == 0
    assert report["sent"] + report["in_doubt"] == RECIPIENTS
    members = room.batch_members()
    got = Counter(d.email for d in read_record(record))
    in_doubt = {email for number in doubtful for email in members[number]}
    outside = [email for email in room.emails if email not in in_doubt]
    assert [email for email in outside if got[email] != 1] == []
    for number in doubtful:
        assert {got[email] for email in members[number]} in ({0}, {1}), number

    # The cap held for the send in all: four senders on four hosts until the kill, then
    # three. After it, the dead host's reserved turns go unused (a bucket never lends
    # them: ratecap.py), so the whole send is a little under the cap, never over.
    rate = pace.rate(until=killed_at)
    assert 0.9 * RATE <= rate <= 1.1 * RATE, (
        f"{rate:,.0f}/s against a cap of {RATE:,.0f}/s: {pace.profile()}"
    )
    assert pace.rate() <= 1.1 * RATE, pace.profile()

    # Recovering the dead host's batches: the operator resends what is in doubt.
    resumed = room.digest("send", EDITION, "--resume", "--retry-in-doubt")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got = Counter(d.email for d in read_record(record))
    assert sorted(got) == sorted(room.emails)
    assert {got[email] for email in outside} == {1}
