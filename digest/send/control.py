"""The operators' controls on a send: pause it, and drive it from one place at a time.

Shared by the command line (`digest sends NAME --pause`) and the web's sends pages, so
both follow one rule, and the ledger decides, never the page:

- **Pause** moves an active send (sending, incomplete) to paused in one conditional
  UPDATE (Sends.change_send_state). Every process sending it stops claiming batches at
  once (a claim checks the send's state in the same statement, ledger._claim), the
  batches in flight finish and are recorded; nothing is left in doubt by a pause. Of
  two operators pausing together, one pauses it and the other is told so.
- **Drive**: a run the web app starts (start, resume, resend in doubt) holds the lease
  `send:EDITION` (the scheduler's lease table, a row with a holder and an expiry)
  and renews it while it runs. A second click, a double-submitted form or a second
  operator finds the lease held and starts nothing. A web app killed mid-send stops
  renewing it, and after LEASE_SECONDS the send may be driven again.
- **Resending in doubt** requeues batches left `sending`; a batch some process is
  still pushing looks the same. So it is refused while a web run holds the lease
  (`refuse_while_driven`, also for `digest send --retry-in-doubt`), and the web asks
  for the send to be paused, incomplete or stopped first.

Who asked for what, and what the ledger answered, is recorded (store/actions.py).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from digest.errors import SendError
from digest.send.reports import ACTIVE_STATES
from digest.store import Store
from digest.store.actions import record_action

log = logging.getLogger("digest.send")

#: How long a web run's claim on a send lasts unless renewed (every third of it): after
#: a crash the send may be driven again this long later.
LEASE_SECONDS = 30.0


def lease_name(edition: str) -> str:
    return f"send:{edition}"


def driver(store: Store, edition: str) -> str:
    """Who is driving the send from the web now ("" = nobody: no lease, or it lapsed)."""
    from digest.store import now

    row = store.runs.lease(lease_name(edition))
    if row is None or row.expires_at <= now():
        return ""
    return str(row.holder)


def refuse_while_driven(store: Store, edition: str, mine: str = "") -> None:
    """Resending in doubt while another run may have a batch in flight could mail its
    readers twice: refused, with what to do."""
    holder = driver(store, edition)
    if holder and holder != mine:
        raise SendError(
            f"edition {edition} is being sent from the web ({holder.rpartition('|')[2]}); "
            "its batches in flight look in doubt until they finish. Pause it (the sends "
            f"page, or `digest sends {edition} --pause`), wait for it to stop, then resend "
            "the batches in doubt"
        )


class Drive:
    """The lease on one send for one run: taken once, renewed by a thread, released."""

    def __init__(self, store: Store, edition: str, holder: str) -> None:
        self.store, self.edition, self.holder = store, edition, holder
        self._ttl = timedelta(seconds=LEASE_SECONDS)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> bool:
        """True if this run may drive the send (nobody else's live lease)."""
        return self.store.runs.take_lease(lease_name(self.edition), self.holder, self._ttl)

    def keep(self) -> None:
        """Renew the lease every third of its life until released."""

        def renew() -> None:
            while not self._done.wait(LEASE_SECONDS / 3):
                try:
                    self.store.runs.renew_lease(lease_name(self.edition), self.holder, self._ttl)
                except Exception as exc:  # the database blinked: the next renewal may do
                    log.warning("send %s: could not renew its lease: %s", self.edition, exc)

        self._thread = threading.Thread(target=renew, name=f"lease-{self.edition}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(5)
        self.store.runs.release_lease(lease_name(self.edition), self.holder)


def pause(store: Store, edition: str, who: str) -> str:
    """Pause an active send: no process claims another batch of it; the batches in flight
    finish. Returns what was done; SendError when there is nothing to pause."""
    row = store.sends.get_send(edition)
    if row is None:
        raise SendError(f"edition {edition} has no send to pause")
    note = f"paused by {who}; resume to send the rest"
    if store.sends.change_send_state(row.id, ACTIVE_STATES, "paused", note):
        said = f"paused the send of {edition}: no further batch is claimed; those in flight finish"
        record_action(store, edition, who, "pause", said)
        log.info("send %s: %s (by %s)", edition, said, who)
        return said
    state = store.sends.get_send(edition).state
    refused = f"the send of {edition} is {state}, not running: nothing to pause"
    record_action(store, edition, who, "pause", f"refused: {refused}")
    raise SendError(refused)
