"""Recipient by recipient: what a backend that delivers one message at a time records.

The ledger records a batch before and after each push (ledger.py), which is
enough for SendGrid: one request carries the whole batch, and either it was
taken or it was not. SMTP hands over one message per recipient, and the outbox
writes one file per recipient, so a batch can be half delivered when a relay
fails or the process dies. Remembering the accepted ones in memory (as before)
is lost with the process: each `--resume` mailed them again.

The shape, kept small (the Backend protocol does not change):

- At claim the ledger leaves out of the batch everyone recorded as accepted by
  an earlier claim (any backend then gets only who is left: a send started over
  SMTP and resumed over SendGrid mails nobody twice), and hangs a LedgerJournal
  on the batch (`Batch.journal`). A batch's first claim skips the look-up: nobody
  can be recorded yet.
- A backend that delivers one by one tells the journal, per recipient,
  `trying` before it hands the message over (before MAIL FROM), then
  `accepted`, `refused` (for good, with the reason), `deferred` (not taken, try
  again later) or `unsure` (the connection died after the message was sent and
  before the answer: it may have gone). SendGrid never calls it, so a batch
  sent through the API costs nothing more (one read if it is claimed again).
- Writes: the outcome of one recipient goes to the database together with
  "trying" for the next, in one transaction, and the last outcome when the
  push ends: about one small write per message (the outbox: one per chunk of
  files). A crash can therefore leave at most one recipient per batch in
  "trying", and that is the only one in doubt: whoever has no row did not get
  the message, whoever is "accepted" did.
- `--retry-in-doubt` requeues the batch; the claim again leaves out only the
  accepted, so the one in "trying" gets it again (perhaps a second copy, which
  is what the operator chose) and the untried get it once.

Outside a send (an editor's test copy, a notice) a batch has no journal; the
backend keeps the same tally in memory with the base Journal.
"""

from __future__ import annotations

from dataclasses import replace

from digest.models import Batch
from digest.store import Store, delivery


class Journal:
    """One claim of a batch, recipient by recipient, in memory."""

    def __init__(self, earlier: int = 0) -> None:
        #: Accepted by earlier claims (and so left out of this one).
        self.earlier = earlier
        self.taken: set[str] = set()  # accepted in this claim
        self.refusals: dict[str, str] = {}  # refused for good, with the server's words
        self.doubts: dict[str, str] = {}  # may or may not have it, and why

    def done(self, email: str) -> bool:
        """Settled in this claim: a retry of the batch leaves it alone."""
        return email in self.taken or email in self.refusals or email in self.doubts

    @property
    def accepted_count(self) -> int:
        return self.earlier + len(self.taken)

    @property
    def may_repeat(self) -> bool:
        """Would sending the batch again, in another claim, mail someone twice? Yes
        for anyone in doubt, and here for anyone accepted: memory dies with the process."""
        return bool(self.taken or self.doubts)

    def trying(self, *emails: str) -> None:
        """About to hand these recipients' messages over."""

    def accepted(self, *emails: str) -> None:
        self.taken.update(emails)

    def refused(self, email: str, reason: str) -> None:
        self.refusals[email] = reason

    def deferred(self, email: str) -> None:
        """Not taken, for now (a 4xx, a connection lost before DATA): tried again later."""

    def unsure(self, email: str, why: str) -> None:
        """Lost between handing the message over and the answer: in doubt."""
        self.doubts[email] = why

    def flush(self) -> None:
        """Make every outcome so far durable (nothing to do in memory)."""


class LedgerJournal(Journal):
    """A Journal that records in the deliveries table as it goes (see the module docstring).

    An outcome waits in memory for the next write ("trying" for the next recipient,
    or flush at the end of the push), so each message costs one transaction. A
    crash before that write leaves the recipient in "trying": in doubt, as it is.
    """

    def __init__(self, store: Store, batch: Batch, earlier: int) -> None:
        super().__init__(earlier)
        self._store = store
        self._where = (batch.send_id, batch.number)
        self._settled: list[str] = []  # accepted since the last write
        self._gone: list[str] = []  # tried and not taken since the last write: rows go

    @property
    def may_repeat(self) -> bool:
        """Only for those in doubt: the accepted are recorded, and a claim leaves them out."""
        return bool(self.doubts)

    def trying(self, *emails: str) -> None:
        send_id, number = self._where
        delivery.record(
            self._store,
            send_id,
            number,
            accepted=self._settled,
            not_sent=self._gone,
            trying=emails,
        )
        self._settled, self._gone = [], []

    def accepted(self, *emails: str) -> None:
        super().accepted(*emails)
        self._settled.extend(emails)

    def refused(self, email: str, reason: str) -> None:
        super().refused(email, reason)
        self._gone.append(email)

    def deferred(self, email: str) -> None:
        self._gone.append(email)

    def flush(self) -> None:
        self.trying()


def journal_for(store: Store, batch: Batch) -> Batch:
    """The claimed batch without whoever an earlier claim recorded as accepted, with a
    LedgerJournal for this claim.

    Rows left in "trying" by an earlier claim (a crash, a connection lost after
    DATA) go: this claim sends to those recipients again, as the operator chose
    (only --retry-in-doubt requeues such a batch). So "trying" rows always belong
    to the batch's last claim, and none means it recorded nobody in doubt, or it
    went through a backend that does not record (SendGrid: then the whole batch is).
    """
    if batch.attempts <= 1:  # its first claim: nobody can be recorded yet, no need to look
        return replace(batch, journal=LedgerJournal(store, batch, earlier=0))
    known = delivery.tally(store, batch.send_id, batch.number)
    if known.trying:
        delivery.forget_trying(store, batch.send_id, batch.number)
    left = [r for r in batch.recipients if r.email not in known.accepted]
    journal = LedgerJournal(store, batch, earlier=len(batch.recipients) - len(left))
    return replace(batch, recipients=left, journal=journal)


def in_doubt_detail(store: Store, send_id: int, number: int, size: int) -> str:
    """What recording recipient by recipient says of a batch in doubt, for `digest sends`."""
    known = delivery.tally(store, send_id, number)
    accepted, unsure = len(known.accepted), known.trying
    if not unsure:
        if not accepted:
            return ""
        return (
            f" ({accepted} of them recorded accepted one by one; "
            f"--retry-in-doubt mails only the other {size - accepted})"
        )
    shown = ", ".join(unsure[:5]) + (" ..." if len(unsure) > 5 else "")
    return (
        f" (recorded one by one: {accepted} accepted, {len(unsure)} may have had it "
        f"({shown}), {size - accepted - len(unsure)} not sent; "
        f"--retry-in-doubt mails only the {size - accepted} not accepted)"
    )
