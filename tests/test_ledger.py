"""The fault rules of the send ledger, with the SendGrid backend and our server on 127.0.0.1.

Waits are recorded instead of slept (RetryPolicy.sleep), so these run in seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fakes.newsroom import (
    EDITION,
    copy_newsroom,
    drafted_newsroom,
    letter,
    with_delivery,
)
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid

from digest import config, jobs
from digest.config import Settings
from digest.errors import SendError
from digest.models import Recipient
from digest.send.base import SendStopped
from digest.send.ledger import RetryPolicy, deliver, report
from digest.send.sendgrid import SendGridBackend
from digest.store import Store

READERS = [Recipient(f"reader{i:03d}@example.org", f"Reader {i}") for i in range(50)]


def _batches() -> list[list[Recipient]]:
    return [READERS[i : i + 10] for i in range(0, 50, 10)]


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Settings:
    loaded = drafted_newsroom(tmp_path_factory.mktemp("ledger-newsroom"), db_url)
    return with_delivery(loaded, batch_size=10)


class Waits:
    """RetryPolicy.sleep that records instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.seconds.append(seconds)


def _send(
    settings: Settings, fake: FakeSendGrid, policy: RetryPolicy, *, concurrency: int = 1
) -> tuple[Store, int, object]:
    store = Store.open(settings.database_url)
    send_id = store.sends.create_send(
        EDITION, "sendgrid", [READERS[i : i + 10] for i in range(0, 50, 10)]
    )
    backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
    try:
        result = deliver(
            store, backend, letter(settings), send_id, policy=policy, concurrency=concurrency
        )
    finally:
        backend.close()
    return store, send_id, result


def test_429_waits_until_the_reset_and_does_not_use_up_the_tries(
    settings: Settings, fake: FakeSendGrid
) -> None:
    waits = Waits()
    fake.faults.reset_in = 4
    fake.fail_next("429", 3)
    store, _send_id, result = _send(settings, fake, RetryPolicy(attempts=2, sleep=waits))
    assert result.state == "done" and result.sent == 50  # type: ignore[attr-defined]
    assert len(waits.seconds) == 3 and all(2.5 < s < 6.0 for s in waits.seconds)
    assert sorted(Counter(d.email for d in fake.deliveries).values()) == [1] * 50
    store.close()


def test_5xx_and_dropped_connections_back_off_exponentially_with_jitter(
    settings: Settings, fake: FakeSendGrid
) -> None:
    waits = Waits()
    for kind in ("500", "drop", "503", "500"):
        fake.fail_next(kind)
    store, _send_id, result = _send(settings, fake, RetryPolicy(base_delay=1.0, sleep=waits))
    assert result.sent == 50  # type: ignore[attr-defined]
    # Try n waits a random time up to base * 2**(n-1): 1, 2, 4, 8 seconds.
    assert [s <= bound for s, bound in zip(waits.seconds, (1, 2, 4, 8), strict=True)] == [True] * 4
    assert len(fake.deliveries) == 50
    store.close()


def test_a_batch_that_keeps_failing_is_failed_and_the_rest_go_out(
    settings: Settings, fake: FakeSendGrid
) -> None:
    fake.fail_next("503", 3)
    store, send_id, result = _send(settings, fake, RetryPolicy(attempts=3, sleep=Waits()))
    assert (result.sent, result.failed, result.state) == (40, 10, "incomplete")  # type: ignore[attr-defined]
    (failed,) = store.sends.failed_batches(send_id)
    assert (failed.number, failed.state, failed.response_code, failed.attempts) == (
        1,
        "failed",
        503,
        3,
    )
    assert "gave up after 3 tries" in failed.error
    store.close()


def test_400_and_413_fail_the_batch_with_the_api_s_message(
    settings: Settings, fake: FakeSendGrid
) -> None:
    fake.fail_next("413")
    store, send_id, result = _send(settings, fake, RetryPolicy(sleep=Waits()))
    assert (result.sent, result.failed) == (40, 10)  # type: ignore[attr-defined]
    (failed,) = store.sends.failed_batches(send_id)
    assert failed.response_code == 413 and "Payload Too Large" in failed.error
    assert failed.attempts == 1  # never retried
    store.close()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_401_stops_the_whole_send_at_once(
    settings: Settings, fake: FakeSendGrid, concurrency: int
) -> None:
    fake.fail_next("401")
    with pytest.raises(SendStopped, match="SENDGRID_API_KEY"):
        _send(settings, fake, RetryPolicy(sleep=Waits()), concurrency=concurrency)
    store = Store.open(settings.database_url)
    after = report(store, store.sends.get_send(EDITION).id)
    assert after.state == "stopped" and "SENDGRID_API_KEY" in after.note
    assert after.in_doubt == 0  # the refused batch went back to pending
    # One worker: nothing more. Two: the other finishes what it had in hand.
    assert after.sent <= (concurrency - 1) * 20 and after.pending >= 10
    store.close()


def test_after_n_failed_batches_in_a_row_the_send_pauses_and_says_why(
    settings: Settings, fake: FakeSendGrid
) -> None:
    fake.fail_next("500", 100)
    with pytest.raises(SendError, match=r"paused after 2 batches in a row failed \(last: "):
        _send(settings, fake, RetryPolicy(attempts=2, max_consecutive_failures=2, sleep=Waits()))
    store = Store.open(settings.database_url)
    after = report(store, store.sends.get_send(EDITION).id)
    assert after.state == "paused" and "--resume" in after.note
    assert (after.failed, after.pending, after.sent) == (20, 30, 0)
    store.close()


def test_the_rate_cap_paces_the_send(settings: Settings, fake: FakeSendGrid) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    started = time.monotonic()
    _store, _send_id, result = _send(settings, fake, RetryPolicy(rate_per_second=200, sleep=sleep))
    elapsed = time.monotonic() - started
    assert result.sent == 50  # type: ignore[attr-defined]
    # 5 batches of 10 at 200 a second start 0.05 s apart (send/ratecap.py): the last one
    # 0.2 s after the first; the waits make up what sending did not. (How much that is
    # depends on how fast the machine sends: not asserted.)
    assert elapsed >= 0.2 and sum(waits) <= 0.2


def test_env_sets_the_base_delay(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("env")
    loaded = config.load(copy_newsroom(root), env={"DIGEST_RETRY_BASE_DELAY": "0.01"})
    assert RetryPolicy.from_settings(loaded.delivery).base_delay == 0.01


def test_a_worker_sends_pending_batches_but_never_failed_or_in_doubt_ones(
    settings: Settings, fake: FakeSendGrid
) -> None:
    env = {**settings.env, "SENDGRID_API_KEY": DEFAULT_KEY, "SENDGRID_API_HOST": fake.url}
    settings = replace(settings, env=env)
    store = Store.open(settings.database_url)
    send_id = store.sends.create_send(
        EDITION, "sendgrid", [READERS[i : i + 10] for i in range(0, 50, 10)]
    )
    store.sends.claim_batch(send_id)  # batch 1: in doubt, as after a crash
    store.sends.claim_batch(send_id)
    store.sends.finish_batch(send_id, 2, "failed", response_code=400, error="bad")
    sent = jobs.work(settings, store, once=True)
    assert sent == 30
    after = report(store, send_id)
    assert (after.sent, after.in_doubt, after.failed, after.state) == (30, 10, 10, "incomplete")
    assert jobs.work(settings, store, once=True) == 0  # nothing left it may take
    store.close()
