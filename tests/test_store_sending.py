"""The store's parts a big send leans on: concurrent claims, the recipient query, start-up."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from digest.models import Edition, Recipient, Subscriber
from digest.store import MIGRATIONS, Store, newest_revision


def _send(store: Store, batches: int, size: int = 3) -> int:
    moment = datetime(2025, 12, 5, tzinfo=UTC)
    store.editions.save_edition(Edition("2025-12-05", moment, moment, moment, "s", "p", None))
    return store.sends.create_send(
        "2025-12-05",
        "outbox",
        [[Recipient(f"r{b}-{i}@example.org") for i in range(size)] for b in range(batches)],
    )


def test_workers_claiming_at_once_never_get_the_same_batch(store: Store) -> None:
    send_id = _send(store, 60)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (batch := store.sends.claim_batch(send_id)) is not None:
            with lock:
                claimed.append(batch.number)
            store.sends.finish_batch(send_id, batch.number, "sent", response_code=202)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, 61))
    assert store.sends.batch_states(send_id) == {"sent": (60, 180)}


def test_a_claim_returns_the_snapshot_and_counts_the_attempt(store: Store) -> None:
    send_id = _send(store, 2, size=2)
    first = store.sends.claim_batch(send_id)
    assert first is not None
    assert first.recipients == [Recipient("r0-0@example.org"), Recipient("r0-1@example.org")]
    assert (first.number, first.state, first.attempts) == (1, "sending", 1)
    store.sends.requeue_batches(send_id, ["sending"])
    again = store.sends.claim_batch(send_id)
    assert again is not None and (again.number, again.attempts) == (1, 2)


def test_recipients_come_in_address_order_without_a_sort(store: Store) -> None:
    store.subscribers.upsert_subscribers(
        [Subscriber(f"r{i:04d}@example.org", f"R {i}") for i in range(2500)]
        + [Subscriber("left@example.org", status="unsubscribed")]
    )
    store.subscribers.suppress("r0007@example.org", "bounced")
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    got = list(store.subscribers.deliverable_recipients(chunk=1000))
    event.remove(store.engine, "before_cursor_execute", capture)
    assert len(got) == 2499 and got == sorted(got)
    assert got[0] == Recipient("r0000@example.org", "R 0")
    if store.dialect == "sqlite":
        # SQLite once took the status index and sorted every active row for each chunk.
        statement, parameters = statements[-1]
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        assert not any("TEMP B-TREE" in str(row) for row in plan), plan


def test_the_newest_revision_is_alembic_s_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert newest_revision() == ScriptDirectory.from_config(config).get_current_head()


def test_an_up_to_date_database_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    Store.open(url).close()  # creates the schema, with Alembic
    probe = (
        "import sys\n"
        "from digest.store import Store\n"
        f"Store.open({url!r}).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_the_snapshot_cuts_the_deliverable_list_into_numbered_batches(store: Store) -> None:
    moment = datetime(2025, 12, 5, tzinfo=UTC)
    store.editions.save_edition(Edition("2025-12-05", moment, moment, moment, "s", "p", None))
    readers = [Subscriber(f"r{i:03d}@example.org", f'Ré "{i}", \\ ü') for i in range(25)]
    store.subscribers.upsert_subscribers(
        [*readers, Subscriber("left@example.org", status="unsubscribed")]
    )
    store.subscribers.suppress("r003@example.org", "bounced")
    send_id = store.sends.snapshot_send("2025-12-05", "sendgrid", batch_size=10)
    row = store.sends.get_send("2025-12-05")
    assert (row.id, row.recipients, row.batches, row.state) == (send_id, 24, 3, "sending")
    claimed = []
    while (batch := store.sends.claim_batch(send_id)) is not None:
        claimed.append(batch)
    assert [(b.number, len(b.recipients)) for b in claimed] == [(1, 10), (2, 10), (3, 4)]
    everyone = [r for b in claimed for r in b.recipients]
    expected = [Recipient(s.email, s.name) for s in readers if s.email != "r003@example.org"]
    assert sorted(everyone) == expected  # names survive the database's JSON intact
