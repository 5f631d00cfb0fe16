"""The sends' rate buckets: when each send's rate cap next lets a recipient out.

Beside tables.py, as events.py is: the send_rate_buckets table and its one query,
for send/ratecap.py (read that for the algorithm). One row per send that had a cap
on PostgreSQL; SQLite keeps its buckets in the sending process and never uses it.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, String, Table, text

from digest.store import Store
from digest.store.tables import metadata

#: `next_at`: seconds since the epoch by the database's clock, so workers on machines
#: whose clocks disagree still share one time line.
send_rate_buckets = Table(
    "send_rate_buckets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("next_at", Float, nullable=False),
)

#: Move the bucket on by :seconds from max(next_at, now); the wait before sending.
#: The row lock makes takers of one bucket queue, each seeing the last one's next_at.
_TAKE = text(
    """
    INSERT INTO send_rate_buckets AS b (name, next_at)
    VALUES (:name, EXTRACT(EPOCH FROM clock_timestamp()) + :seconds)
    ON CONFLICT (name) DO UPDATE
    SET next_at = GREATEST(b.next_at, EXTRACT(EPOCH FROM clock_timestamp())) + :seconds
    RETURNING next_at - :seconds - EXTRACT(EPOCH FROM clock_timestamp())
    """
)


def take(store: Store, name: str, seconds: float) -> float:
    """Reserve `seconds` of the bucket `name` (PostgreSQL only); how long to wait first."""
    with store.begin() as conn:
        wait = conn.execute(_TAKE, {"name": name, "seconds": seconds}).scalar_one()
    return max(float(wait), 0.0)
