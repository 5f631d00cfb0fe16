"""Firing jobs: catch-up after downtime, takeover, grace, retries, approval, alerts, stopping.

The Runner gets an injected clock, so "it is 06:31 after a night of downtime" takes
no waiting; everything else is real: the sample newsroom, its SQLite (or a
PostgreSQL) store, the jobs in digest.jobs and the outbox, where the alerts to the
operators land as .eml files too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest import config, editor, jobs
from digest.schedule import Runner, Schedule, load
from digest.send.ledger import report
from digest.store import Store

JUNEAU = ZoneInfo("America/Juneau")
DAY = "2025-12-05"  # the sample newsroom's stories are from this morning's window

LEAD_URL = "https://news.example.org/news/trump-to-meet-putin-at-joint-base-elmendorf-richardson-in-anchorage/"

MORNING = """
time_zone: America/Juneau
jobs:
  collect: {cron: "0 5 * * *", action: collect, retry_delay: 0}
  draft: {cron: "30 5 * * *", action: draft, retry_delay: 0}
  send: {cron: "0 6 * * *", action: send, misfire_grace: 30m, retry_delay: 0}
"""


class Clock:
    """The time as the test says it is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(hour: int, minute: int = 0, day: int = 5, second: int = 0) -> datetime:
    """A moment on a December 2025 morning in Juneau, in UTC."""
    return datetime(2025, 12, day, hour, minute, second, tzinfo=JUNEAU).astimezone(UTC)


def newsroom_settings(newsroom: Path, **replace: str) -> config.Settings:
    """The sample newsroom's settings, with some digest.toml lines replaced.

    One batch in flight per send: with two, store.sends.claim_batch's retry can wait on
    its own SQLite write lock for the 30 s busy timeout (reported to the lead).
    """
    toml = newsroom / "digest.toml"
    text = toml.read_text()
    if "concurrency = 1" not in text:
        text = text.replace("[delivery]\n", "[delivery]\nconcurrency = 1\n", 1)
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    toml.write_text(text)
    return config.load(toml, env={"DIGEST_SECRET_KEY": "test-secret"})


@pytest.fixture
def settings(newsroom: Path) -> config.Settings:
    return newsroom_settings(newsroom)


def schedule_for(settings: config.Settings, body: str = MORNING) -> Schedule:
    settings.cron_file.write_text(body)
    return load(settings.cron_file, settings)


def record(store: Store, job: str, fire_time: datetime, state: str = "ok") -> None:
    """A run an earlier scheduler finished."""
    assert store.runs.claim_job_run(job, fire_time, "earlier")
    store.runs.finish_job_run(job, fire_time, "earlier", state, "")


def alerts(settings: config.Settings) -> list[EmailMessage]:
    folder = settings.delivery.outbox_dir / "alerts"
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]  # type: ignore[misc]


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def sent_files(settings: config.Settings, day: str = DAY) -> list[Path]:
    return sorted((settings.delivery.outbox_dir / day).glob("*.eml"))


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The scheduler's log lines, even if a CLI test in this worker stopped propagation."""
    logger = logging.getLogger("digest.schedule")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


@pytest.fixture
def local_store(settings: config.Settings) -> Iterator[Store]:
    s = Store.open(settings.database_url)
    yield s
    s.close()


def runner(
    settings: config.Settings, store: Store, schedule: Schedule, now: datetime, holder: str = "me"
) -> Runner:
    return Runner(settings, store, schedule, holder=holder, clock=Clock(now))


# -- catch-up after downtime -----------------------------------------------------------------


def test_a_first_start_has_missed_nothing(settings: config.Settings, local_store: Store) -> None:
    schedule = schedule_for(settings)
    assert runner(settings, local_store, schedule, at(6, 10)).catch_up() == []
    assert local_store.runs.list_job_runs() == [] and alerts(settings) == []


def test_missed_collect_and_draft_run_once_after_days_of_downtime(
    settings: config.Settings, local_store: Store, logged: pytest.LogCaptureFixture
) -> None:
    schedule = schedule_for(settings)
    for job, hour, minute in (("collect", 5, 0), ("draft", 5, 30), ("send", 6, 0)):
        record(local_store, job, at(hour, minute, day=2))
    # Down from the 2nd until 05:45 on the 5th: three collects and drafts missed.
    outcomes = runner(settings, local_store, schedule, at(5, 45)).catch_up()
    assert [(o.job, o.fire_time, o.state) for o in outcomes] == [
        ("send", at(6, 0, day=4), "held"),  # yesterday's send, a day late: never sent
        ("collect", at(5, 0), "ok"),  # once, for the latest fire time, coalesced
        ("draft", at(5, 30), "ok"),  # after the collect: in fire-time order
    ]
    collects = local_store.runs.list_job_runs("collect")
    assert [r.fire_time for r in collects] == [at(5, 0, day=2), at(5, 0)]
    assert local_store.editions.load_edition(DAY) is not None
    assert local_store.sends.get_send("2025-12-04") is None
    assert any("missed 3 fire times since 2025-12-02 05:00 AKST" in m for m in logged.messages)
    (held,) = alerts(settings)
    assert "send held" in held["Subject"] and "2025-12-04" in text_of(held)
    # A notice to the operators is not list mail: nothing to unsubscribe from.
    assert held["List-Unsubscribe"] is None and held["List-Id"] is None


def test_a_missed_send_within_its_grace_is_sent(
    settings: config.Settings, local_store: Store
) -> None:
    schedule = schedule_for(settings)
    jobs.sync_subscribers(settings, local_store)
    for job, hour, minute in (("collect", 5, 0), ("draft", 5, 30), ("send", 6, 0)):
        record(local_store, job, at(hour, minute, day=4))
    # Back at 06:10: everything missed this morning runs, the send 10 minutes late.
    outcomes = runner(settings, local_store, schedule, at(6, 10)).catch_up()
    assert [(o.job, o.state) for o in outcomes] == [
        ("collect", "ok"),
        ("draft", "ok"),
        ("send", "ok"),
    ]
    assert local_store.sends.get_send(DAY).state == "done"
    assert len(sent_files(settings)) == 9
    assert local_store.runs.job_run("send", at(6, 0)).state == "ok"
    assert alerts(settings) == []


def test_a_missed_send_past_its_grace_is_held_logged_and_mailed(
    settings: config.Settings, store: Store, logged: pytest.LogCaptureFixture
) -> None:
    schedule = schedule_for(settings)
    for job, hour, minute in (("collect", 5, 0), ("draft", 5, 30), ("send", 6, 0)):
        record(store, job, at(hour, minute, day=4))
    outcomes = runner(settings, store, schedule, at(6, 31)).catch_up()
    assert [(o.job, o.state) for o in outcomes] == [
        ("collect", "ok"),
        ("draft", "ok"),
        ("send", "held"),
    ]
    assert store.sends.get_send(DAY) is None and sent_files(settings) == []
    row = store.runs.job_run("send", at(6, 0))
    assert row.state == "held" and "31m late" in row.detail
    assert any(
        r.levelno == logging.ERROR and "held, not sent" in r.getMessage() for r in logged.records
    )
    (mail,) = alerts(settings)
    assert mail["To"] == "ops@news.example.org"
    assert mail["Subject"].endswith("send held: send due 2025-12-05 06:00 AKST")
    assert f"digest send {DAY} --resume" in text_of(mail)
    # The next scheduler to start does not send it, nor mail about it again.
    assert runner(settings, store, schedule, at(9, 0), holder="next").catch_up() == []
    assert store.sends.get_send(DAY) is None and len(alerts(settings)) == 1


# -- takeover: a run left behind by a scheduler that died -------------------------------------


def prepare_edition(settings: config.Settings, store: Store) -> None:
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, date(2025, 12, 5))


def test_a_send_interrupted_by_a_dead_scheduler_is_resumed_not_resent(
    newsroom: Path, store: Store
) -> None:
    settings = newsroom_settings(newsroom, **{"batch_size = 1000": "batch_size = 2"})
    schedule = schedule_for(settings)
    prepare_edition(settings, store)
    record(store, "collect", at(5, 0))
    record(store, "draft", at(5, 30))
    # The active scheduler took the 06:00 send, sent two batches, and was killed.
    assert store.runs.claim_job_run("send", at(6, 0), "dead-scheduler")
    partial = jobs.send(settings, store, DAY, limit=2)
    # Batches hold one section preference each: 2 + 1 readers with none, then 1 each.
    assert partial.sent == 3 and partial.pending == 6
    # The standby takes over at 06:02.
    outcomes = runner(settings, store, schedule, at(6, 2), holder="standby").catch_up()
    assert [(o.job, o.state) for o in outcomes] == [("send", "ok")]
    row = store.runs.job_run("send", at(6, 0))
    assert (row.state, row.holder, row.starts) == ("ok", "standby", 2)
    done = report(store, store.sends.get_send(DAY).id)
    assert (done.sent, done.pending, done.in_doubt, done.failed) == (9, 0, 0, 0)
    assert len(sent_files(settings)) == 9
    assert alerts(settings) == []


def test_an_in_doubt_batch_is_left_alone_and_the_operators_told(
    newsroom: Path, local_store: Store
) -> None:
    settings = newsroom_settings(newsroom, **{"batch_size = 1000": "batch_size = 2"})
    schedule = schedule_for(settings)
    prepare_edition(settings, local_store)
    record(local_store, "collect", at(5, 0))
    record(local_store, "draft", at(5, 30))
    assert local_store.runs.claim_job_run("send", at(6, 0), "dead-scheduler")
    jobs.send(settings, local_store, DAY, limit=1)
    send_id = local_store.sends.get_send(DAY).id
    # Killed between marking batch 2 "sending" and hearing back from the mail API.
    claimed = local_store.sends.claim_batch(send_id)
    assert claimed is not None and claimed.number == 2
    outcomes = runner(settings, local_store, schedule, at(6, 5), holder="standby").catch_up()
    assert [(o.job, o.state) for o in outcomes] == [("send", "failed")]
    result = report(local_store, send_id)
    # Batch 2 is the third reader with no section preference: one in doubt.
    assert (result.sent, result.in_doubt, result.in_doubt_batches) == (8, 1, [2])
    (mail,) = alerts(settings)
    assert "send failed" in mail["Subject"] and "in doubt" in text_of(mail)


def test_a_send_that_ran_past_its_grace_before_the_takeover_is_held(
    newsroom: Path, local_store: Store
) -> None:
    settings = newsroom_settings(newsroom, **{"batch_size = 1000": "batch_size = 2"})
    schedule = schedule_for(settings)
    prepare_edition(settings, local_store)
    assert local_store.runs.claim_job_run("send", at(6, 0), "dead-scheduler")
    jobs.send(settings, local_store, DAY, limit=1)
    outcomes = runner(settings, local_store, schedule, at(7, 0), holder="standby").catch_up()
    assert [(o.job, o.state) for o in outcomes] == [("send", "held")]
    assert report(local_store, local_store.sends.get_send(DAY).id).sent == 2
    assert len(alerts(settings)) == 1


def test_two_schedulers_firing_one_fire_time_run_it_once(
    settings: config.Settings, local_store: Store
) -> None:
    schedule = schedule_for(settings)
    collect = schedule.job("collect")
    first = runner(settings, local_store, schedule, at(5, 0, second=1), holder="a")
    second = runner(settings, local_store, schedule, at(5, 0, second=2), holder="b")
    assert first.fire_due(collect).state == "ok"  # type: ignore[union-attr]
    assert second.fire_due(collect).state == "taken"  # type: ignore[union-attr]
    assert [(r.job, r.fire_time, r.holder) for r in local_store.runs.list_job_runs()] == [
        ("collect", at(5, 0), "a")
    ]


# -- stopping: SIGTERM lets the send finish its batch ---------------------------------------


def test_stopping_mid_send_finishes_the_batch_and_the_next_scheduler_resumes(
    newsroom: Path, local_store: Store
) -> None:
    settings = newsroom_settings(
        newsroom, **{"batch_size = 1000": "batch_size = 1\nrate_per_second = 5"}
    )
    schedule = schedule_for(settings)
    prepare_edition(settings, local_store)
    first = runner(settings, local_store, schedule, at(6, 0, second=1), holder="first")
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(first.fire_due(schedule.job("send"))))
    thread.start()
    deadline = time.monotonic() + 20
    while len(sent_files(settings)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.halt.set()  # what SIGTERM does
    thread.join(20)
    assert outcome[0].state == "stopped"
    stopped = report(local_store, local_store.sends.get_send(DAY).id)
    assert stopped.state == "paused" and stopped.in_doubt == 0
    assert 2 <= stopped.sent < 9 and stopped.sent + stopped.pending == 9
    assert local_store.runs.job_run("send", at(6, 0)).state == "stopped"
    # Started again at 06:03, the scheduler finishes the send it stopped.
    again = runner(settings, local_store, schedule, at(6, 3), holder="second").catch_up()
    assert [(o.job, o.state) for o in again] == [("send", "ok")]
    done = report(local_store, local_store.sends.get_send(DAY).id)
    assert (done.sent, done.pending, done.in_doubt) == (9, 0, 0)
    assert len(sent_files(settings)) == 9 and alerts(settings) == []


# -- failures: retried, logged, mailed; the scheduler goes on ----------------------------------


def test_a_failing_job_is_retried_logged_mailed_and_the_rest_go_on(
    newsroom: Path,
    local_store: Store,
    logged: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds = '"examples/sample-newsroom/feed.xml", "examples/sample-newsroom/archive.xml"'
    settings = newsroom_settings(
        newsroom, **{f"feeds = [{feeds}]": f'feeds = [{feeds}, "gone.xml"]'}
    )
    schedule = schedule_for(settings)
    record(local_store, "collect", at(5, 0, day=4))
    record(local_store, "draft", at(5, 30, day=4))
    # The draft fails once (a database hiccup, say), then works.
    real_draft = jobs.draft
    calls = []

    def flaky_draft(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("connection reset")
        return real_draft(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs, "draft", flaky_draft)
    outcomes = runner(settings, local_store, schedule, at(5, 45)).catch_up()
    assert [(o.job, o.state) for o in outcomes] == [("collect", "failed"), ("draft", "ok")]
    assert "failed after 3 attempts" in outcomes[0].detail and "gone.xml" in outcomes[0].detail
    assert len(calls) == 2
    messages = logged.messages
    assert any("collect (2025-12-05 05:00 AKST): attempt 1 of 3 failed" in m for m in messages)
    assert any("attempt 1 of 3 failed: RuntimeError: connection reset" in m for m in messages)
    (mail,) = alerts(settings)  # the collect that failed its retries; not the draft
    assert "collect failed" in mail["Subject"]
    assert local_store.runs.job_run("collect", at(5, 0)).state == "failed"


def test_a_late_collect_with_a_grace_is_skipped_not_mailed(
    settings: config.Settings, local_store: Store
) -> None:
    body = MORNING.replace("action: collect, retry_delay: 0", "action: collect, misfire_grace: 1h")
    schedule = schedule_for(settings, body)
    record(local_store, "collect", at(5, 0, day=4))
    outcomes = runner(settings, local_store, schedule, at(6, 30)).catch_up()
    assert [(o.job, o.state) for o in outcomes] == [("collect", "skipped")]
    assert alerts(settings) == []


# -- approval policy -----------------------------------------------------------------------------


def test_approved_policy_sends_only_an_approved_edition(
    settings: config.Settings, local_store: Store
) -> None:
    body = MORNING.replace("misfire_grace: 30m", "misfire_grace: 30m, approval: approved")
    schedule = schedule_for(settings, body)
    prepare_edition(settings, local_store)
    # A story for the 6th's edition (the sample's stories are all the 5th's).
    (story,) = local_store.stories.stories_by_url([LEAD_URL]).values()
    later = replace(story, id=None, url=f"{LEAD_URL}?day=6", published_at=at(5, 0, day=6))
    local_store.stories.upsert_stories([later])
    jobs.draft(settings, local_store, date(2025, 12, 6))
    editor.approve(settings, local_store, "2025-12-06", "chief")  # what `digest approve` does
    send = schedule.job("send")
    held = runner(settings, local_store, schedule, at(6, 0, second=3)).fire_due(send)
    assert held is not None and held.state == "held" and "'draft', not approved" in held.detail
    assert local_store.sends.get_send(DAY) is None
    (mail,) = alerts(settings)
    assert "send held" in mail["Subject"] and f"digest send {DAY}" in text_of(mail)
    sent = runner(settings, local_store, schedule, at(6, 0, day=6, second=3)).fire_due(send)
    assert sent is not None and sent.state == "ok"
    assert local_store.sends.get_send("2025-12-06").state == "done"
    assert local_store.editions.load_edition("2025-12-06").status == "sent"


def test_a_send_of_an_empty_edition_fails_and_the_operators_are_told(
    settings: config.Settings, local_store: Store
) -> None:
    schedule = schedule_for(settings)
    jobs.sync_subscribers(settings, local_store)  # readers, but no story collected at all
    jobs.draft(settings, local_store, date(2025, 12, 5))
    send = schedule.job("send")
    outcome = runner(settings, local_store, schedule, at(6, 0, second=3)).fire_due(send)
    assert outcome is not None and outcome.state == "failed"
    assert "has no stories" in outcome.detail
    assert local_store.sends.get_send(DAY) is None and sent_files(settings) == []
    (mail,) = alerts(settings)
    assert "send failed" in mail["Subject"] and "has no stories" in text_of(mail)


@pytest.mark.parametrize(
    ("the_list", "expected"),
    [
        ("missing", "[delivery] subscribers_file"),  # moved or mistyped: not a silent skip
        ("nobody on it", "has no one to send to"),  # every reader left, or none came in
    ],
)
def test_a_send_to_nobody_fails_and_the_operators_are_told(
    settings: config.Settings, local_store: Store, the_list: str, expected: str
) -> None:
    schedule = schedule_for(settings)
    jobs.collect(settings, local_store)
    jobs.draft(settings, local_store, date(2025, 12, 5))
    subscribers = settings.delivery.subscribers_file
    assert subscribers is not None
    if the_list == "missing":
        subscribers.unlink()
    else:
        subscribers.write_text("email,name,sections,status\n", encoding="utf-8")
    send = schedule.job("send")
    outcome = runner(settings, local_store, schedule, at(6, 0, second=3)).fire_due(send)
    assert outcome is not None and outcome.state == "failed"
    assert expected in outcome.detail and "Traceback" not in outcome.detail
    # Nothing recorded: the edition is not burned, and goes out once the list is there.
    assert local_store.sends.get_send(DAY) is None and sent_files(settings) == []
    (mail,) = alerts(settings)
    assert "send failed" in mail["Subject"] and expected in text_of(mail)


# -- preview: the editors get the coming edition ----------------------------------------------


def test_a_preview_job_mails_the_editors_the_coming_edition(newsroom: Path) -> None:
    editors = 'operators = ["ops@news.example.org"]\neditors = ["ed@news.example.org"]'
    settings = newsroom_settings(newsroom, **{'operators = ["ops@news.example.org"]': editors})
    schedule = schedule_for(
        settings, 'jobs:\n  preview: {cron: "0 21 * * *", action: preview, retry_delay: 0}\n'
    )
    store = Store.open(settings.database_url)
    try:
        jobs.collect(settings, store)
        # 21:00 on the 4th, after that day's send: the coming edition is the 5th's.
        preview = schedule.job("preview")
        outcome = runner(settings, store, schedule, at(21, 0, day=4, second=2)).fire_due(preview)
        assert outcome is not None and outcome.state == "ok", outcome
        assert outcome.detail == "preview of edition 2025-12-05 (draft) mailed to 1 editor(s)"
        (mail,) = sent_files(settings, "test-2025-12-05")
        message = BytesParser(policy=policy.default).parsebytes(mail.read_bytes())
        assert message["To"] == "ed@news.example.org"
        assert message["Subject"].startswith("[TEST] Trump to meet Putin")
        assert store.editions.load_edition(DAY) is not None and store.sends.get_send(DAY) is None
    finally:
        store.close()


def test_a_preview_job_needs_editors_to_mail(settings: config.Settings) -> None:
    with pytest.raises(config.ConfigError, match=r"job 'preview': a preview job mails .* editors"):
        schedule_for(settings, 'jobs:\n  preview: {cron: "0 21 * * *", action: preview}\n')


# -- the run job, and fire times APScheduler had to skip ----------------------------------------


def test_a_run_job_collects_drafts_and_sends_once(
    settings: config.Settings, local_store: Store
) -> None:
    schedule = schedule_for(
        settings, 'jobs:\n  morning: {cron: "0 6 * * *", action: run, misfire_grace: 1h}\n'
    )
    morning = schedule.job("morning")
    outcome = runner(settings, local_store, schedule, at(6, 0, second=2)).fire_due(morning)
    assert outcome is not None and outcome.state == "ok", outcome
    assert "9 of 9 recipients sent" in outcome.detail
    assert len(sent_files(settings)) == 9
    again = runner(settings, local_store, schedule, at(6, 0, second=3), "b").fire_due(morning)
    assert again is not None and again.state == "taken"


def test_a_fire_time_skipped_for_a_send_still_running_is_recorded_and_mailed(
    settings: config.Settings, local_store: Store
) -> None:
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

    schedule = schedule_for(settings)
    event = JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "send", "default", [at(6, 0)])
    runner(settings, local_store, schedule, at(6, 0)).on_max_instances(event)
    row = local_store.runs.job_run("send", at(6, 0))
    assert row.state == "skipped" and "still going" in row.detail
    (mail,) = alerts(settings)
    assert "send skipped" in mail["Subject"]


def test_a_send_interrupted_on_an_earlier_day_is_reported_not_resumed(
    settings: config.Settings, local_store: Store
) -> None:
    schedule = schedule_for(settings)
    record(local_store, "collect", at(5, 0))
    record(local_store, "draft", at(5, 30))
    # A send left running on the 3rd by a scheduler that died; the 4th's went fine.
    assert local_store.runs.claim_job_run("send", at(6, 0, day=3), "dead-scheduler")
    record(local_store, "send", at(6, 0, day=4))
    outcomes = runner(settings, local_store, schedule, at(5, 45), holder="next").catch_up()
    assert outcomes == []  # nothing is due; the 3rd's send is not resumed two days late
    assert local_store.runs.job_run("send", at(6, 0, day=3)).state == "interrupted"
    (mail,) = alerts(settings)
    assert "send interrupted" in mail["Subject"] and "digest send 2025-12-03" in text_of(mail)
