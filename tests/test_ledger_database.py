"""The ledger rides out a database that blinks (send/durable.py), in one process: a
write that fails after a delivered request is tried again, a claim whose commit went
unanswered is found again, a database away for longer than ledger_retry_seconds stops
the send with one line. test_send_faults.py does the same to `digest send` as a process
(a PostgreSQL restart, a long SQLite lock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted, letter, with_delivery
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from sqlalchemy.exc import IntegrityError, OperationalError

from digest import config, jobs
from digest.config import Settings
from digest.models import Recipient
from digest.send.durable import DatabaseUnavailable, Durable
from digest.send.ledger import RetryPolicy, deliver
from digest.send.sendgrid import SendGridBackend
from digest.store import Sends, Store

READERS = [Recipient(f"reader{i:03d}@example.org", f"Reader {i}") for i in range(50)]


def _gone(message: str = "server closed the connection unexpectedly") -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL goes away under a statement."""
    return OperationalError("UPDATE send_batches ...", {}, Exception(message))


# -- the rules -----------------------------------------------------------------------


def test_a_call_is_tried_again_while_the_database_is_away_and_only_then() -> None:
    waits: list[float] = []
    durable = Durable(EDITION, 5, sleep=waits.append)
    answers: list[Any] = [_gone(), _gone("database is locked"), "done"]

    def flaky() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    assert durable("recording batch 3 as sent", flaky) == "done"
    assert len(waits) == 2 and all(0 <= w <= 2 for w in waits)

    def wrong() -> None:  # our mistake, not the database's absence: never retried
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        durable("recording", wrong)
    assert len(waits) == 2


def test_past_ledger_retry_seconds_the_send_stops_with_one_line() -> None:
    def away() -> None:
        raise _gone("connection refused\n\tIs the server running on that host?")

    with pytest.raises(DatabaseUnavailable) as stopped:
        Durable(EDITION, 0.3)("recording batch 7 as sent", away)
    message = str(stopped.value)
    assert "\n" not in message
    assert message == (
        f"send {EDITION} stopped: the database was unreachable for 0.3 s (recording batch 7 "
        "as sent: connection refused); every batch recorded so far is safe; "
        f"run `digest send {EDITION} --resume` once it is back"
    )


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Settings:
    root = tmp_path_factory.mktemp("ledger-db-newsroom")
    loaded = config.load(copy_newsroom(root), env={"DIGEST_SECRET_KEY": SECRET})
    loaded = replace(loaded, database_url=db_url)
    drafted(loaded)
    return with_delivery(loaded, batch_size=10)


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def _blinking(sends: Sends, method: str, times: int, *, after: bool) -> None:
    """Make store.sends.METHOD fail `times` times as a dropped connection does: before the
    statement ran, or (after) once it had committed but before the answer came."""
    real: Callable[..., Any] = getattr(sends, method)
    left = [times]

    def blink(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            if after:
                real(*args, **kwargs)
            raise _gone()
        return real(*args, **kwargs)

    setattr(sends, method, blink)


@pytest.mark.parametrize(("method", "after"), [("finish_batch", False), ("claim_batch", True)])
def test_a_database_that_blinks_mid_send_leaves_nothing_in_doubt_and_nobody_twice(
    settings: Settings, fake: FakeSendGrid, method: str, after: bool
) -> None:
    """finish_batch: the "sent" of a delivered batch fails three times, then goes in.
    claim_batch: claims commit but their answers are lost; the retry finds each one
    again by its token instead of claiming a second batch and leaving the first in doubt."""
    store = Store.open(settings.database_url)
    send_id = store.sends.create_send(
        EDITION, "sendgrid", [READERS[i : i + 10] for i in range(0, 50, 10)]
    )
    _blinking(store.sends, method, 3, after=after)
    backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
    try:
        result = deliver(store, backend, letter(settings), send_id, concurrency=2)
    finally:
        backend.close()
    assert (result.state, result.sent, result.in_doubt) == ("done", 50, 0)
    got = Counter(d.email for d in fake.deliveries)
    assert sorted(got) == [r.email for r in READERS] and set(got.values()) == {1}
    store.close()


def test_a_database_gone_for_good_leaves_only_the_batch_in_hand_in_doubt(
    settings: Settings, fake: FakeSendGrid
) -> None:
    store = Store.open(settings.database_url)
    send_id = store.sends.create_send(
        EDITION, "sendgrid", [READERS[i : i + 10] for i in range(0, 50, 10)]
    )
    _blinking(store.sends, "finish_batch", 1000, after=False)
    backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
    with pytest.raises(DatabaseUnavailable, match=r"--resume` once it is back"):
        deliver(
            store,
            backend,
            letter(settings),
            send_id,
            policy=RetryPolicy(ledger_retry_seconds=0.5),
        )
    backend.close()
    # One batch went out and its "sent" could not be written; nothing else was tried.
    assert len(fake.deliveries) == 10
    assert store.sends.batch_states(send_id) == {"sending": (1, 10), "pending": (4, 40)}
    store.close()


def test_a_database_away_before_the_ledger_is_one_line_too(settings: Settings) -> None:
    store = Store.open(settings.database_url)

    def away(*_args: object) -> None:
        raise _gone("connection refused")

    store.editions.load_edition = away  # type: ignore[method-assign]
    with pytest.raises(DatabaseUnavailable) as stopped:
        jobs.send(settings, store, EDITION)
    assert str(stopped.value) == (
        f"send {EDITION} stopped: the database was unreachable (preparing: connection "
        f"refused); every batch recorded so far is safe; run `digest send {EDITION} "
        "--resume` once it is back"
    )
    store.close()


def test_the_settings_reach_the_ledger(tmp_path: Path) -> None:
    toml = copy_newsroom(tmp_path)
    toml.write_text(
        toml.read_text().replace(
            "[delivery]\n", "[delivery]\nledger_retry_seconds = 7.5\nevent_wait_seconds = 60\n"
        )
    )
    policy = RetryPolicy.from_settings(config.load(toml, env={}).delivery)
    assert (policy.ledger_retry_seconds, policy.event_wait_seconds) == (7.5, 60.0)
