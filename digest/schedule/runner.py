"""The runner: what happens to one fire time of one job.

`Runner` fires a job: it records (job, fire time) in job_runs first, so the same
fire time never runs twice even across a takeover; applies the catch-up rules (a
late send is held, not sent); retries; and mails the operators about failed and
held sends (`digest.schedule.operators`). The work itself is `digest.jobs`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import JobSubmissionEvent

from digest import jobs
from digest.config import Settings
from digest.errors import DigestError, InputError, SendError
from digest.schedule.cron_yaml import CronJob, Schedule, duration_text
from digest.schedule.operators import Alert, mail_operators
from digest.send.ledger import SendReport
from digest.store import Store

# One logger for the whole scheduler, as before the split: its lines are `digest.schedule`.
log = logging.getLogger("digest.schedule")

#: A run cut short (scheduler stopped or died) is resumed once, never more: a job that
#: kills its scheduler every time must not do so forever.
MAX_STARTS = 2


@dataclass
class Outcome:
    """What became of one fire time of one job."""

    job: str
    fire_time: datetime
    state: str  # ok | failed | held | skipped | stopped | taken (someone else's)
    detail: str = ""


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Runner:
    """Fires jobs for one active scheduler: records, catch-up rules, retries, alerts.

    `clock` is injectable so tests can say "it is 14:00 after a night of downtime"
    without waiting for it; `halt` is set when the scheduler stops or loses its lease,
    and a running send finishes its batch and returns.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        schedule: Schedule,
        *,
        holder: str,
        halt: threading.Event | None = None,
        clock: Clock = _utc_now,
        alert: Alert | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.schedule = schedule
        self.holder = holder
        self.halt = halt or threading.Event()
        self.clock = clock
        self.alert: Alert = alert or (lambda s, b: mail_operators(settings, s, b))

    def fire_due(self, job: CronJob) -> Outcome | None:
        """What APScheduler calls at each fire time: run the fire time that is due now."""
        try:
            fire_time = job.trigger.previous_fire_time(self.clock())
            return None if fire_time is None else self.fire(job, fire_time)
        except Exception as exc:  # the store is away, say: log it, and the scheduler goes on
            log.error("%s: could not run: %s: %s", job.name, type(exc).__name__, exc)
            return None

    def fire(self, job: CronJob, fire_time: datetime, *, reason: str = "") -> Outcome:
        """Run `job` for `fire_time` unless it ran already; apply grace, retries, alerts."""
        now = self.clock()
        label = f"{job.name} ({self.when(fire_time)})"
        late = now - fire_time
        if job.misfire_grace is not None and late > job.misfire_grace:
            return self._too_late(job, fire_time, label, late)
        if not self.store.runs.claim_job_run(
            job.name, fire_time, self.holder, max_starts=MAX_STARTS
        ):
            row = self.store.runs.job_run(job.name, fire_time)
            who = f"{row.state} (by {row.holder})" if row is not None else "taken"
            log.info("%s: already %s; not run again", label, who)
            return Outcome(job.name, fire_time, "taken", who)
        log.info("%s: %s started%s", label, job.action, f" ({reason})" if reason else "")
        started = time.monotonic()
        outcome = self._run_with_retries(job, fire_time, label)
        seconds = time.monotonic() - started
        upcoming_at = job.trigger.next_fire_time(self.clock())
        following = f"; next run {self.when(upcoming_at)}" if upcoming_at else ""
        level = logging.INFO if outcome.state in ("ok", "stopped") else logging.ERROR
        log.log(
            level, "%s: %s in %.1fs: %s%s", label, outcome.state, seconds, outcome.detail, following
        )
        return outcome

    def _too_late(self, job: CronJob, fire_time: datetime, label: str, late: timedelta) -> Outcome:
        state = "held" if job.sends else "skipped"
        detail = (
            f"{duration_text(late)} late, "
            f"more than its misfire grace of {duration_text(job.misfire_grace)}"
        )
        if not self.store.runs.claim_job_run(
            job.name, fire_time, self.holder, state=state, detail=detail, max_starts=MAX_STARTS
        ):
            return Outcome(job.name, fire_time, "taken", "recorded already")
        if job.sends:
            # A digest at 3 pm is worse than none: keep it back and tell a person.
            log.error("%s: held, not sent: %s", label, detail)
            self._alert(job, fire_time, "held", detail)
        else:
            log.warning("%s: skipped: %s", label, detail)
        return Outcome(job.name, fire_time, state, detail)

    def _run_with_retries(self, job: CronJob, fire_time: datetime, label: str) -> Outcome:
        attempts = job.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                state, detail = self._perform(job, fire_time)
            except Exception as exc:  # one failing job must never stop the scheduler
                # Our errors are written for operators; anything else is a bug, so say what.
                error = str(exc) if isinstance(exc, DigestError) else f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    log.warning(
                        "%s: attempt %d of %d failed: %s; retrying in %s",
                        label,
                        attempt,
                        attempts,
                        error,
                        duration_text(job.retry_delay),
                    )
                    if self.halt.wait(job.retry_delay.total_seconds()):
                        return self._finish(
                            job, fire_time, "stopped", f"stopped before retry: {error}"
                        )
                    continue
                detail = f"failed after {attempts} attempt{'s' if attempts > 1 else ''}: {error}"
                return self._finish(job, fire_time, "failed", detail)
            return self._finish(job, fire_time, state, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(self, job: CronJob, fire_time: datetime, state: str, detail: str) -> Outcome:
        if not self.store.runs.finish_job_run(job.name, fire_time, self.holder, state, detail):
            log.warning("%s: another scheduler has taken this run over", job.name)
        if state in ("failed", "held"):
            self._alert(job, fire_time, state, detail)
        if state == "stopped" and job.sends:
            log.warning(
                "%s: stopped part-way; the next active scheduler resumes it within its grace, "
                "or finish it by hand: %s",
                job.name,
                self._command(job, fire_time),
            )
        return Outcome(job.name, fire_time, state, detail)

    def _perform(self, job: CronJob, fire_time: datetime) -> tuple[str, str]:
        """Do the job once through digest.jobs. Returns (state, detail); raises on failure."""
        day = fire_time.astimezone(self.settings.newsroom.zone).date()
        if job.action == "collect":
            result = jobs.collect(self.settings, self.store)
            summary = (
                f"{result.new} new, {result.updated} updated stories, "
                f"{result.pageview_rows} page-view rows"
            )
            if result.failed_sources:
                raise InputError(
                    f"{len(result.failed_sources)} source(s) could not be read "
                    f"({', '.join(result.failed_sources[:3])}); {summary}"
                )
            return "ok", summary
        if job.action == "draft":
            edition = jobs.draft(self.settings, self.store, day)
            return "ok", f"edition {edition.name} drafted: {edition.subject}"
        if job.action == "preview":
            return "ok", self._preview(fire_time)
        if job.action == "run":
            summary = jobs.run(self.settings, self.store, day, watch=jobs.Watch(stop=self.halt))
            return self._sent(summary.send)
        name = day.isoformat()
        if job.approval == "approved":
            edition = jobs.load_edition(self.store, name)
            if edition.status not in ("approved", "sending", "sent"):
                return "held", (
                    f"edition {name} is {edition.status!r}, not approved; "
                    "approve it, then send it by hand"
                )
        # As `digest run` does: the newsroom's subscribers.csv is the list it keeps, so
        # bring it in before the send snapshots its recipients (never resubscribes).
        jobs.sync_subscribers(self.settings, self.store)
        watch = jobs.Watch(stop=self.halt)
        return self._sent(jobs.send(self.settings, self.store, name, resume=True, watch=watch))

    def _preview(self, fire_time: datetime) -> str:
        """Draft the next edition to go out and mail the editors a [TEST] copy of it."""
        day = jobs.upcoming(self.settings, fire_time)
        name = day.isoformat()
        if self.store.sends.get_send(name) is not None:
            return f"edition {name} is being sent or was sent already; no preview mailed"
        edition = jobs.draft(self.settings, self.store, day)
        editors = self.settings.sender.editors
        jobs.send_test(self.settings, self.store, name, editors)
        return f"preview of edition {name} ({edition.status}) mailed to {len(editors)} editor(s)"

    def _sent(self, result: SendReport) -> tuple[str, str]:
        summary = (
            f"edition {result.edition}: {result.sent:,} of {result.recipients:,} recipients sent "
            f"({result.sent_now:,} now) via {result.backend}"
        )
        if result.state == "done":
            return "ok", summary
        # "testing": stopped while a subject test waited for clicks; resumed like a pause.
        if self.halt.is_set() and result.state in ("paused", "testing"):
            return "stopped", f"{summary}; stopped after the batch in flight"
        raise SendError(f"{summary}; send is {result.state}: {result.note or 'not finished'}")

    def catch_up(self) -> list[Outcome]:
        """After downtime or a takeover: each job's latest missed fire time, once, in order.

        Missed is counted from the job's newest recorded run, so a job that has never
        run here (a first start, a new job) has missed nothing. A missed collect or
        draft runs once however many fire times passed; a missed send or run goes
        through `fire`, which holds it if it is past its grace. A latest run that was
        stopped or interrupted part-way is resumed the same way; the send ledger
        makes that safe (sent batches are skipped, in-doubt ones left to a person).
        """
        try:
            return self._catch_up()
        except Exception as exc:  # as in fire_due: logged, and the schedule goes on
            log.error("catch-up failed: %s: %s", type(exc).__name__, exc)
            return []

    def _catch_up(self) -> list[Outcome]:
        now = self.clock()
        interrupted = self.store.runs.interrupt_job_runs(self.holder)
        for row in interrupted:
            log.warning(
                "%s (%s): scheduler %s stopped while it ran; marked interrupted",
                row.job,
                self.when(row.fire_time),
                row.holder,
            )
        due: list[tuple[datetime, int, CronJob, str]] = []
        for order, job in enumerate(self.schedule.jobs):
            latest = job.trigger.previous_fire_time(now)
            last = self.store.runs.last_job_run(job.name)
            if latest is None or last is None:
                continue
            if last.fire_time < latest:
                missed = len(job.trigger.fire_times(last.fire_time, latest))
                reason = (
                    f"catch-up: missed {missed} fire time{'s' if missed > 1 else ''} "
                    f"since {self.when(last.fire_time)}; running once, for the latest"
                )
                due.append((latest, order, job, reason))
            elif last.fire_time == latest and last.state in ("stopped", "interrupted"):
                due.append((latest, order, job, f"resuming the run left {last.state}"))
        resumed = {(job.name, fire_time) for fire_time, _, job, _ in due}
        for row in interrupted:
            known = self.schedule.find(row.job)
            if known and known.sends and (row.job, row.fire_time) not in resumed:
                self._alert(
                    known,
                    row.fire_time,
                    "interrupted",
                    f"scheduler {row.holder} stopped while this ran; a later fire time "
                    "has replaced it, so it is not resumed automatically",
                )
        if not due:
            log.info("catch-up: nothing missed")
        outcomes = []
        for fire_time, _order, job, reason in sorted(due, key=lambda d: (d[0], d[1])):
            if self.halt.is_set():
                break
            outcomes.append(self.fire(job, fire_time, reason=reason))
        return outcomes

    def on_max_instances(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a fire time because the job's previous run is still going."""
        job = self.schedule.find(event.job_id)
        if job is None or not event.scheduled_run_times:
            return
        fire_time = event.scheduled_run_times[-1]
        detail = "the previous run was still going"
        if self.store.runs.claim_job_run(
            job.name, fire_time, self.holder, state="skipped", detail=detail
        ):
            log.warning("%s (%s): skipped: %s", job.name, self.when(fire_time), detail)
            if job.sends:
                self._alert(job, fire_time, "skipped", detail)

    def when(self, moment: datetime) -> str:
        """A fire time as the newsroom reads it (with seconds only under the test hook)."""
        local = moment.astimezone(self.schedule.zone)
        if self.schedule.test_seconds:
            return f"{local:%Y-%m-%d %H:%M:%S %Z}"
        return f"{local:%Y-%m-%d %H:%M %Z}"

    def _command(self, job: CronJob, fire_time: datetime) -> str:
        day = fire_time.astimezone(self.settings.newsroom.zone).date().isoformat()
        config = f"--config {self.settings.path}"
        if job.action == "run":
            return f"digest run --date {day} {config}"
        if job.action == "send":
            return f"digest send {day} --resume {config}"
        if job.action == "preview":
            coming = jobs.upcoming(self.settings, fire_time).isoformat()
            editors = " ".join(f"--test {e}" for e in self.settings.sender.editors)
            return f"digest send {coming} {editors} {config}"
        return f"digest {job.action} {config}"

    def _alert(self, job: CronJob, fire_time: datetime, state: str, detail: str) -> None:
        when = self.when(fire_time)
        subject = f"{job.name} {state}: {job.action} due {when}"
        lines = [
            f"The {job.action} job {job.name!r}, due {when} "
            f"({fire_time.astimezone(UTC):%Y-%m-%d %H:%M} UTC), is {state}.",
            "",
            detail,
            "",
        ]
        if job.sends:
            day = fire_time.astimezone(self.settings.newsroom.zone).date().isoformat()
            lines += [
                f"What went out so far: digest sends {day} --config {self.settings.path}",
                f"To send it now, by hand:  {self._command(job, fire_time)}",
            ]
        else:
            lines.append(f"To run it by hand:  {self._command(job, fire_time)}")
        lines += ["", f"Scheduler: {self.holder}; schedule: {self.schedule.path}"]
        self.alert(subject, "\n".join(lines) + "\n")
