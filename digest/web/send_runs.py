"""The sends the web app runs for operators: outside the request, one run per send, and
picked up again when the app restarts.

Each run is a thread of the web app that calls `jobs.send`, exactly what `digest send`
calls, while it holds the send's lease (send/control.py): a second click, a form
submitted twice or two operators at once find the lease held and start nothing. The
request only asks; the ledger decides what is sent, and the page reads it back.

Why a thread of the web app, and not the scheduler or a separate process: the scheduler
runs fire times, not requests, and a process per click would need a supervisor. What
must survive the app restarting mid-send is not the thread but the send, and the ledger
already makes any send resumable (sent batches are skipped, in-doubt ones left to a
person). So the app records what it was asked (store/actions.py) and, when it starts,
resumes the sends it was running when it stopped:

- latest action a web start or resume, send still `sending`: the app died mid-send
  (killed, the machine restarted); at most the batches in flight are in doubt;
- latest action `interrupted`, send `paused`: the app was stopped (SIGTERM); its runs
  finished their batches in flight and paused, and recorded so.

It resumes only pending (and failed) batches, never in-doubt ones, and waits for the
dead run's lease to lapse first. A send an operator paused stays paused. A `digest
worker` beside the app helps any running send, as before.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from digest import environment, jobs
from digest.config import Settings
from digest.errors import DigestError, SendError
from digest.send import control
from digest.send.ledger import report
from digest.store import Store
from digest.store.actions import latest_actions, record_action

log = logging.getLogger("digest.web")

#: Who the app's own records name.
WEB = "digest web"
START, RESUME, RESEND = "start", "resume", "resend in doubt"
ACTIONS = (START, RESUME, RESEND)
_RESTARTED, _INTERRUPTED, _FINISHED = "resumed after a restart", "interrupted", "finished"
#: States a resend in doubt is asked in: nothing is sending the send any more.
_AT_REST = ("paused", "incomplete", "stopped")


class SendRuns:
    """The web app's runs of sends, one thread each."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def _holder(self, who: str) -> str:
        """The lease holder of one run: this process, the run, and who asked for it."""
        return f"{self._me}|{uuid.uuid4().hex[:6]}|{who}"

    def begin(self, edition: str, action: str, who: str) -> str:
        """Start a run (start, resume or resend in doubt) if the ledger allows it now.

        Returns what was done; SendError says why nothing was. Either way it is recorded.
        """
        if action not in ACTIONS:
            raise SendError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        drive = control.Drive(self.store, edition, self._holder(who))
        try:
            if not drive.take():
                holder = control.driver(self.store, edition).rpartition("|")[2] or "someone"
                raise SendError(
                    f"the send of {edition} is being run already (by {holder}); nothing started"
                )
            try:
                said = self._check(edition, action)
            except BaseException:
                drive.release()
                raise
        except DigestError as exc:
            record_action(self.store, edition, who, action, f"refused: {exc}")
            raise
        record_action(self.store, edition, who, action, said)
        self._spawn(drive, edition, action, who)
        log.info("send %s: %s (by %s)", edition, said, who)
        return said

    def _check(self, edition: str, action: str) -> str:
        """What the ledger says to the action now: a line to show, or SendError."""
        row = self.store.sends.get_send(edition)
        if action == START:
            loaded = jobs.load_edition(self.store, edition)
            if row is not None:
                raise SendError(f"edition {edition} has a send already ({row.state}): not started")
            if loaded.status != "approved":
                raise SendError(
                    f"edition {edition} is {loaded.status}, not approved: approve it on its "
                    "editor page first; nothing was sent"
                )
            jobs.refuse_empty(loaded)
            jobs.refuse_no_readers(self.settings, self.store, loaded)
            environment.ready_to_send(self.settings, self.settings.delivery.backend)
            return f"started the send of {edition}"
        if row is None:
            raise SendError(f"edition {edition} has no send yet: start it first")
        now = report(self.store, row.id, event_wait=self.settings.delivery.event_wait_seconds)
        environment.ready_to_send(self.settings, row.backend)
        if action == RESUME:
            if now.pending + now.failed == 0:
                left = f"; {now.in_doubt:,} in doubt" if now.in_doubt else ""
                raise SendError(f"the send of {edition} has nothing left to send{left}")
            return f"resumed the send of {edition}: {now.pending + now.failed:,} recipients left"
        if now.state not in _AT_REST:
            raise SendError(
                f"the send of {edition} is {now.state}: pause it first, so that no batch is "
                "in flight when those in doubt are sent again"
            )
        if not now.in_doubt:
            raise SendError(f"the send of {edition} has no batch in doubt")
        if len(now.awaiting_events) == len(now.in_doubt_batches):
            raise SendError(
                f"the batches in doubt of {edition} may still be settled by SendGrid's events "
                f"until {now.events_due} UTC ([delivery] event_wait_seconds); resend after that"
            )
        return (
            f"resending the send of {edition} with its {now.in_doubt:,} recipients in doubt "
            "(some of them may get it twice)"
        )

    def _spawn(self, drive: control.Drive, edition: str, action: str, who: str) -> None:
        drive.keep()
        thread = threading.Thread(
            target=self._run, args=(drive, edition, action, who), name=f"web-send-{edition}"
        )
        with self._lock:
            self._threads[edition] = thread
        thread.start()

    def _run(self, drive: control.Drive, edition: str, action: str, who: str) -> None:
        watch = jobs.Watch(stop=self._stop, holder=drive.holder)
        try:
            result = jobs.send(
                self.settings,
                self.store,
                edition,
                resume=action != START,
                retry_in_doubt=action == RESEND,
                watch=watch,
            )
            said = f"{result.state}: {result.sent:,} of {result.recipients:,} recipients sent"
            if result.note and result.state != "done":
                said += f"; {result.note}"
            if self._stop.is_set() and result.state == "paused":
                record_action(
                    self.store, edition, WEB, _INTERRUPTED,
                    f"the web app stopped mid-send ({said}); it resumes the send when it "
                    "starts again",
                )  # fmt: skip
            else:
                record_action(self.store, edition, WEB, _FINISHED, f"{action} by {who}: {said}")
        except Exception as exc:  # one send's trouble is recorded and the app goes on
            error = str(exc) if isinstance(exc, DigestError) else f"{type(exc).__name__}: {exc}"
            log.error("send %s (%s by %s): %s", edition, action, who, error)
            record_action(self.store, edition, WEB, _FINISHED, f"{action} by {who}: {error}")
        finally:
            drive.release()

    def running(self, edition: str) -> bool:
        with self._lock:
            thread = self._threads.get(edition)
        return thread is not None and thread.is_alive()

    def resume_interrupted(self, patience: float = control.LEASE_SECONDS * 1.5) -> list[str]:
        """When the app starts: resume the sends it was running when it stopped (module
        docstring). Waits up to `patience` seconds for a dead run's lease to lapse."""
        wanted = []
        for edition, last in latest_actions(self.store).items():
            row = self.store.sends.get_send(edition)
            if row is None:
                continue
            crashed = last.action in (START, RESUME, RESEND, _RESTARTED) and row.state == "sending"
            stopped = last.action == _INTERRUPTED and row.state == "paused"
            if crashed or stopped:
                wanted.append(edition)
        resumed = []
        deadline = time.monotonic() + patience
        while wanted and not self._stop.is_set():
            for edition in list(wanted):
                drive = control.Drive(
                    self.store, edition, f"{self._me}|{uuid.uuid4().hex[:6]}|{WEB}"
                )
                if drive.take():
                    wanted.remove(edition)
                    record_action(self.store, edition, WEB, _RESTARTED, "the web app started again")
                    log.warning("send %s: resumed after the web app restarted", edition)
                    self._spawn(drive, edition, RESUME, WEB)
                    resumed.append(edition)
            if wanted and (time.monotonic() > deadline or self._stop.wait(1.0)):
                break
        for edition in wanted:
            log.error("send %s: another run holds it; not resumed by this app", edition)
        return resumed

    def close(self, wait: float = 120.0) -> None:
        """The app is stopping: every run finishes its batches in flight and pauses."""
        self._stop.set()
        deadline = time.monotonic() + wait
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
