"""The send's rate cap is global: every worker of a send takes from one bucket
(digest/send/ratecap.py), in PostgreSQL or, on SQLite, in the process.

Three workers, each with its own connection and two sending threads, share one
send through the real ledger and the SendGrid backend against our server on
127.0.0.1; the batches they start together keep to the cap within 10%. (Before,
each worker paced itself: three went at three times the cap.) The multi-host test
(tests/test_multihost.py) does the same with `digest worker` processes on
separate network hosts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from fakes.newsroom import EDITION, drafted_newsroom, letter
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid

from digest.config import Settings
from digest.models import Batch, Recipient
from digest.send.base import Letter, PushResult
from digest.send.ledger import RetryPolicy, deliver, report
from digest.send.ratecap import DatabaseCap, LocalCap, rate_cap
from digest.send.sendgrid import SendGridBackend
from digest.store import Store

RATE = 500.0  # recipients a second, for the send in all: well below what 3 workers can do
BATCH = 100
READERS = [Recipient(f"reader{i:04d}@example.org", f"Reader {i}") for i in range(1500)]


def held(starts: list[tuple[float, int]]) -> float:
    """Recipients a second, from when batches started: what started after the first
    batch, over the time from the first start to the last."""
    starts = sorted(starts)
    return sum(n for _t, n in starts[1:]) / (starts[-1][0] - starts[0][0])


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Settings:
    loaded = drafted_newsroom(tmp_path_factory.mktemp("ratecap-newsroom"), db_url)
    return loaded


class Timed(SendGridBackend):
    """The SendGrid backend, noting when each batch's request started and its size."""

    def __init__(self, starts: list[tuple[float, int]], *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.starts = starts

    def push(self, letter: Letter, batch: Batch) -> PushResult:
        self.starts.append((time.monotonic(), len(batch.recipients)))
        return super().push(letter, batch)


def test_three_workers_together_keep_to_the_cap(settings: Settings, fake: FakeSendGrid) -> None:
    setup = Store.open(settings.database_url)
    batches = [READERS[i : i + BATCH] for i in range(0, len(READERS), BATCH)]
    send_id = setup.sends.create_send(EDITION, "sendgrid", batches)
    starts: list[tuple[float, int]] = []
    results: list[object] = []
    policy = RetryPolicy(rate_per_second=RATE)

    def worker() -> None:
        store = Store.open(settings.database_url)  # a connection of its own, as a process has
        backend = Timed(starts, DEFAULT_KEY, host=fake.url)
        try:
            results.append(
                deliver(
                    store,
                    backend,
                    letter(settings),
                    send_id,
                    policy=policy,
                    concurrency=2,
                    retry_failed=False,
                )
            )
        finally:
            backend.close()
            store.close()

    workers = [threading.Thread(target=worker) for _ in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    after = report(setup, send_id)
    setup.close()
    assert len(results) == 3 and after.state == "done" and after.sent == len(READERS)
    assert sorted(Counter(d.email for d in fake.deliveries).values()) == [1] * len(READERS)
    assert len(starts) == len(batches)
    rate = held(starts)
    assert 0.9 * RATE <= rate <= 1.1 * RATE, f"{rate:,.0f}/s against a cap of {RATE:,.0f}/s"


def test_takers_on_separate_connections_share_the_bucket(db_url: str) -> None:
    """Three takers of one send, as three workers' threads: their starts keep to the
    rate together. On PostgreSQL each has its own connection and DatabaseCap."""
    stores = [Store.open(db_url) for _ in range(3)]
    caps = [rate_cap(store, 7, RATE) for store in stores]
    kind = DatabaseCap if stores[0].dialect == "postgresql" else LocalCap
    assert all(isinstance(cap, kind) for cap in caps)
    starts: list[tuple[float, int]] = []
    lock = threading.Lock()
    until = time.monotonic() + 1.5

    def take(cap: DatabaseCap | LocalCap) -> None:
        while time.monotonic() < until:
            time.sleep(cap.take(BATCH))
            with lock:
                starts.append((time.monotonic(), BATCH))

    threads = [threading.Thread(target=take, args=(cap,)) for cap in caps for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    rate = held(starts)
    assert 0.9 * RATE <= rate <= 1.1 * RATE, f"{rate:,.0f}/s against a cap of {RATE:,.0f}/s"


def test_a_bucket_starts_batches_one_after_another_and_gathers_no_credit() -> None:
    clock = [1000.0]
    cap = LocalCap(100.0, clock=lambda: clock[0])
    assert cap.take(10) == 0.0  # the first goes at once
    assert cap.take(10) == pytest.approx(0.1)  # then one batch's time apart
    assert cap.take(30) == pytest.approx(0.2)
    clock[0] += 0.25
    assert cap.take(10) == pytest.approx(0.25)  # 0.5 s of batches reserved, 0.25 s gone
    clock[0] += 10.0  # idle: no burst saved up
    assert cap.take(10) == 0.0 and cap.take(10) == pytest.approx(0.1)


def test_no_cap_is_no_bucket(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        assert rate_cap(store, 1, 0.0) is None
    finally:
        store.close()
