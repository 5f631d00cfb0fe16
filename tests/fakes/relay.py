"""An SMTP relay (aiosmtpd) on 127.0.0.1 that counts what each recipient got and fails on cue.

Faults, per recipient address, for the next N times it comes up:

- `defer`: 451 at RCPT ("try again later");
- `drop_at_rcpt`: the connection closed at RCPT, before anything was taken;
- `drop_after_data`: the message taken (counted), then the connection closed
  before the answer: the client cannot know it went;
- `hold_data` / `hold_mail`: at the Nth message's end of DATA (taken, counted, not
  yet answered) or at the Nth MAIL FROM, set `held` and wait for `release`, so a
  test can kill the sender at exactly that moment.

`smtputf8=True` offers SMTPUTF8 (RFC 6531); by default the relay does not.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Taken:
    """One message the relay took."""

    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Relay:
    taken: list[Taken] = field(default_factory=list)
    defer: Counter[str] = field(default_factory=Counter)
    drop_at_rcpt: Counter[str] = field(default_factory=Counter)
    drop_after_data: Counter[str] = field(default_factory=Counter)
    hold_data: int = 0  # hold at the end of DATA of this message (1 = the first), 0 = never
    hold_mail: int = 0  # hold at this MAIL FROM (1 = the first), 0 = never
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _mails: int = 0

    def copies(self) -> Counter[str]:
        """How many messages each recipient got."""
        return Counter(rcpt for t in self.taken for rcpt in t.rcpt_tos)

    async def _hold(self) -> None:
        self.held.set()
        for _ in range(600):  # at most 30 s
            if self.release.is_set():
                return
            await asyncio.sleep(0.05)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._mails += 1
        if self._mails == self.hold_mail:
            await self._hold()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.defer[address] > 0:
            self.defer[address] -= 1
            return "451 4.3.0 try again later"
        if self.drop_at_rcpt[address] > 0:
            self.drop_at_rcpt[address] -= 1
            server.transport.close()
            return "421 4.3.2 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.taken.append(
            Taken(
                envelope.mail_from,
                list(envelope.mail_options),
                list(envelope.rcpt_tos),
                envelope.original_content,
            )
        )
        if len(self.taken) == self.hold_data:
            await self._hold()
        (address,) = envelope.rcpt_tos
        if self.drop_after_data[address] > 0:
            self.drop_after_data[address] -= 1
            server.transport.close()
            return "421 4.3.2 closing"
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(relay: Relay, *, smtputf8: bool = False) -> Iterator[int]:
    """Run the relay on a free port; yields the port."""
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield port
    finally:
        relay.release.set()
        controller.stop()
