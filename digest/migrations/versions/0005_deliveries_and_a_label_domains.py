"""deliveries (recipient by recipient), and stored addresses with A-label domains

Revision ID: 0005
Revises: 0004

Addresses were stored with the domain as email-validator printed it, the U-label
(`olivia@bücher.example`); from now on they are stored with A-labels
(`olivia@xn--bcher-kva.example`, subscribers.normalise_email). Rows are converted
here. Where both spellings were stored they are one reader: the row of the one
that left (unsubscribed, bounced, complained) is kept, so nobody is resubscribed;
of two suppressions the first stands, as Store.suppress has it.

The conversion is not undone by a downgrade: the A-label form is as valid there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import idna
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LEFT = ("unsubscribed", "bounced", "complained")

subscribers = sa.table("subscribers", sa.column("email", sa.String), sa.column("status", sa.String))
suppressions = sa.table(
    "suppressions",
    sa.column("email", sa.String),
    sa.column("reason", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"]),
        sa.PrimaryKeyConstraint("send_id", "number", "email"),
    )
    conn = op.get_bind()
    converted = _convert_suppressions(conn) | _convert_subscribers(conn)
    # Never resubscribe: a reader whose other spelling left has left.
    for email in converted:
        reason = conn.scalar(sa.select(suppressions.c.reason).where(suppressions.c.email == email))
        if reason is not None:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.email == email, subscribers.c.status != reason)
                .values(status=reason)
            )


def downgrade() -> None:
    op.drop_table("deliveries")


def _a_label(email: str) -> str | None:
    """The address with an A-label domain, or None when it has one already (or
    cannot have one: such a row stays as it is, and the relay refuses it)."""
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return None
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}".lower()
    except idna.IDNAError:
        return None


def _non_ascii_domains(conn: Any, table: Any) -> Iterator[tuple[str, str]]:
    """(stored, converted) for each row whose domain needs converting, a chunk at a time
    in address order (a list of a million addresses is never all in memory)."""
    last = ""
    while True:
        chunk = list(
            conn.scalars(
                sa.select(table.c.email)
                .where(table.c.email > last)
                .order_by(table.c.email)
                .limit(5000)
            )
        )
        if not chunk:
            return
        found = [(email, _a_label(email)) for email in chunk]
        yield from ((email, new) for email, new in found if new is not None)
        last = chunk[-1]


def _convert_suppressions(conn: Any) -> set[str]:
    converted: set[str] = set()
    for email, new in list(_non_ascii_domains(conn, suppressions)):
        old_at = conn.scalar(
            sa.select(suppressions.c.created_at).where(suppressions.c.email == email)
        )
        new_at = conn.scalar(
            sa.select(suppressions.c.created_at).where(suppressions.c.email == new)
        )
        if new_at is not None and new_at <= old_at:
            conn.execute(suppressions.delete().where(suppressions.c.email == email))
        else:
            conn.execute(suppressions.delete().where(suppressions.c.email == new))
            conn.execute(
                suppressions.update().where(suppressions.c.email == email).values(email=new)
            )
        converted.add(new)
    return converted


def _convert_subscribers(conn: Any) -> set[str]:
    converted: set[str] = set()
    for email, new in list(_non_ascii_domains(conn, subscribers)):
        status = conn.scalar(sa.select(subscribers.c.status).where(subscribers.c.email == email))
        other = conn.scalar(sa.select(subscribers.c.status).where(subscribers.c.email == new))
        if other is not None and (other in LEFT or status not in LEFT):
            # The A-label row stays: it left, or neither left (it is the one an
            # import writes today).
            conn.execute(subscribers.delete().where(subscribers.c.email == email))
        else:
            conn.execute(subscribers.delete().where(subscribers.c.email == new))
            conn.execute(subscribers.update().where(subscribers.c.email == email).values(email=new))
        converted.add(new)
    return converted
