"""Subject tests (issue 13, item 4): two or three subjects, each mailed to an equal share
of a test group; after a wait the one with the best unique click rate goes to the rest.
Every reader is mailed exactly once, across the test and the rest, whatever moment a
SIGKILL picks; on SQLite and PostgreSQL.

The send goes to the outbox, whose files are named by batch and address: a reader mailed
in two batches (in the test and in the rest) would have two files. Clicks are recorded
as the SendGrid webhook records them (store.events.record_events), for the readers of
the test batches of the subject that should win.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.newsroom import EDITION
from fakes.processes import Newsroom, kill_when, wait_until
from sqlalchemy import select

from digest import config, jobs
from digest.store import Store, events as stored_events, send_batches, sends
from digest.store.events import record_events
from digest.store.subjects import subject_tests

SUBJECTS = ("Council votes on the budget", "What the budget means for you")
#: The webhook's event record: what SendGrid's click events become (store/events.py).
Event = stored_events.ReaderEvent


def _newsroom(
    folder: Path, db_url: str, recipients: int = 60, wait: float = 2, rate: float = 0
) -> Newsroom:
    delivery = f"rate_per_second = {rate}" if rate else ""
    room = Newsroom(folder, db_url, batch_size=5, recipients=recipients, delivery=delivery)
    room.env["DIGEST_BACKEND"] = "outbox"
    room.config.write_text(
        room.config.read_text() + f"\n[subject_tests]\nshare = 0.5\nwait_seconds = {wait}\n"
    )
    args = [a for s in SUBJECTS for a in ("--subject-test", s)]
    edited = room.digest("edit", EDITION, *args)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert "subject test of 1. Council votes" in edited.stdout
    return room


def _state(store: Store) -> str | None:
    with store.begin() as conn:
        return conn.scalar(select(sends.c.state).where(sends.c.edition == EDITION))


def _click_when_testing(room: Newsroom, winner: int, stop: threading.Event) -> threading.Thread:
    """Once the send waits for clicks: half the readers mailed subject `winner` click, and
    one reader of each other subject."""

    def clicks() -> None:
        store = room.store()
        try:
            while _state(store) != "testing":
                if stop.wait(0.02):
                    return
            with store.begin() as conn:
                batches = conn.execute(
                    select(send_batches.c.number, send_batches.c.variant, send_batches.c.recipients)
                    .join(sends, sends.c.id == send_batches.c.send_id)
                    .where(send_batches.c.variant.is_not(None), send_batches.c.state != "held")
                ).all()
            events = []
            for number, variant, recipients in batches:
                readers = [e for e, _ in json.loads(recipients)]
                clicking = readers[::2] if variant == winner else readers[:1]
                for reader in clicking:
                    for repeat in range(2):  # a second click by the same reader counts once
                        events.append(
                            Event(
                                f"click-{number}-{reader}-{repeat}",
                                EDITION,
                                number,
                                reader,
                                "click",
                                datetime.now(UTC),
                            )
                        )
            record_events(store, events)
        finally:
            store.close()

    thread = threading.Thread(target=clicks, daemon=True)
    thread.start()
    return thread


def _mailed(room: Newsroom) -> dict[str, list[tuple[int, str]]]:
    """Each reader -> (batch, subject) of every message the outbox holds for them."""
    got: dict[str, list[tuple[int, str]]] = {}
    for path in sorted((room.folder / "var" / "outbox" / EDITION).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        reader = message["To"].addresses[0].addr_spec  # type: ignore[attr-defined]
        got.setdefault(reader, []).append((int(path.name[:5]), str(message["Subject"])))
    return got


def _report_page(settings: config.Settings, store: Store) -> str:
    from digest import readership
    from digest.web.pages import Pages

    figures = readership.report(store, EDITION)
    assert figures is not None
    response = Pages(settings).render(
        "report.html.j2", root="/", who="anna", csrf_field="csrf", csrf="x", r=figures,
        slot_names=readership.SLOT_NAMES, places_chart=readership.places_chart(figures),
        trend_chart=readership.trend_chart(figures),
    )  # fmt: skip
    return bytes(response.body).decode()


def _check_everyone_once(room: Newsroom, winner: int) -> None:
    mailed = _mailed(room)
    assert sorted(mailed) == sorted(room.emails)  # nobody lost
    assert {r: len(m) for r, m in mailed.items() if len(m) != 1} == {}  # nobody twice
    store = room.store()
    try:
        with store.begin() as conn:
            tests = conn.scalar(select(subject_tests.c.test_batches))
            recorded = conn.scalar(select(subject_tests.c.winner))
    finally:
        store.close()
    assert recorded == winner
    subjects = Counter()
    for [(batch, subject)] in mailed.values():
        group = "test" if batch <= tests else "rest"
        subjects[group, subject] += 1
    # Half the list in the test, in equal shares; the rest all got the winner.
    assert subjects["test", SUBJECTS[0]] == subjects["test", SUBJECTS[1]] == len(room.emails) // 4
    assert subjects["rest", SUBJECTS[winner]] == len(room.emails) // 2
    assert subjects["rest", SUBJECTS[1 - winner]] == 0


def test_the_subject_readers_clicked_goes_to_the_rest(tmp_path: Path, db_url: str) -> None:
    room = _newsroom(tmp_path, db_url)
    stop = threading.Event()
    clicker = _click_when_testing(room, winner=1, stop=stop)
    settings = config.load(room.config, env=room.env)
    store = jobs.open_store(settings)
    try:
        result = jobs.send(settings, store, EDITION)
    finally:
        store.close()
        stop.set()
        clicker.join(10)
    assert result.state == "done", result.note
    assert result.note.startswith('subject test: subject 2 won by unique click rate: "What the')
    # 15 readers had each subject; 9 of subject 2's clicked (twice each), 3 of subject 1's.
    assert 'subject 1 "Council votes on the budget": 3 of 15 readers clicked (20.0%)' in (
        result.note
    )
    assert "9 of 15 readers clicked (60.0%)" in result.note
    _check_everyone_once(room, winner=1)
    shown = room.digest("sends", EDITION)
    assert "subject 2 won by unique click rate" in shown.stdout, shown.stdout
    # The edition's report shows each subject's figures and the decision.
    report = room.digest("report", EDITION, "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    tested = [(s["subject"], s["readers"], s["clicked"], s["winner"]) for s in figures["subjects"]]
    assert tested == [(SUBJECTS[0], 15, 3, False), (SUBJECTS[1], 15, 9, True)]
    assert figures["subject_decision"] == result.note
    text = room.digest("report", EDITION).stdout
    assert f"2. {SUBJECTS[1]!r}: 9 of 15 clicked (60.0%)  ← sent to the rest" in text, text
    # ... and so does the report page (rendered as /reports/EDITION renders it).
    store = jobs.open_store(settings)
    try:
        report_page = _report_page(settings, store)
    finally:
        store.close()
    assert "<h2>Subject test</h2>" in report_page
    assert "9" in report_page and "60.0%" in report_page and "sent to the rest" in report_page


def test_without_clicks_the_first_subject_wins_and_the_send_says_so(
    tmp_path: Path, db_url: str
) -> None:
    room = _newsroom(tmp_path, db_url, wait=0.5)
    sent = room.digest("send", EDITION)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    _check_everyone_once(room, winner=0)
    shown = room.digest("sends", EDITION)
    assert (
        "subject test: no click events arrived by the end of the wait, so the first subject "
        'won: "Council votes on the budget"'
    ) in shown.stdout.replace("\n", " "), shown.stdout
    assert room.report()["note"].startswith("subject test: no click events arrived")


def _test_batches(room: Newsroom) -> int:
    store = room.store()
    try:
        with store.begin() as conn:
            return int(conn.scalar(select(subject_tests.c.test_batches)) or 0)
    finally:
        store.close()


def _sent(room: Newsroom, rest: bool) -> bool:
    """Whether a batch of the test (or of the rest) is sent."""
    tests = _test_batches(room)
    members = room.batch_members()
    store = room.store()
    try:
        with store.begin() as conn:
            states = dict(conn.execute(select(send_batches.c.number, send_batches.c.state)).all())
    finally:
        store.close()
    return any(
        state == "sent" and (number > tests if rest else number <= tests)
        for number, state in states.items()
        if number in members
    )


def _decided(room: Newsroom) -> bool:
    store = room.store()
    try:
        with store.begin() as conn:
            return conn.scalar(select(subject_tests.c.winner)) is not None
    finally:
        store.close()


def _testing(room: Newsroom) -> bool:
    store = room.store()
    try:
        return _state(store) == "testing"
    finally:
        store.close()


MOMENTS = {
    "mailing the test": lambda room: _sent(room, rest=False),
    "waiting": _testing,
    "right after deciding": _decided,
    "mailing the rest": lambda room: _sent(room, rest=True),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_sigkill_at_any_phase_still_mails_every_reader_once(
    tmp_path: Path, db_url: str, moment: str
) -> None:
    # 30 readers a second: the test (60 readers) and the rest (60) take 2 s each.
    room = _newsroom(tmp_path, db_url, recipients=120, wait=2, rate=30)
    stop = threading.Event()
    clicker = _click_when_testing(room, winner=1, stop=stop)
    try:
        sender = room.start("send", EDITION)
        assert kill_when(sender, lambda: MOMENTS[moment](room)), "the send finished first"
        for _ in range(3):
            resumed = room.digest("send", EDITION, "--resume", "--retry-in-doubt")
            if resumed.returncode == 0:
                break
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        stop.set()
        clicker.join(10)
    wait_until(lambda: room.report()["state"] == "done", "the send to be done", 5)
    _check_everyone_once(room, winner=1)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("share = 1.5", "[subject_tests] share must be more than 0 and less than 1"),
        ("share = 0", "[subject_tests] share must be more than 0 and less than 1"),
        ("wait_seconds = -5", "[subject_tests] wait_seconds must be 0 to 86400"),
        ('wait_seconds = "an hour"', "[subject_tests] wait_seconds"),
        ("winner = 2", "[subject_tests] winner is not a setting"),
    ],
)
def test_bad_settings_are_one_error_line(
    tmp_path: Path, newsroom: Path, setting: str, message: str
) -> None:
    import subprocess
    import sys

    toml = newsroom / "digest.toml"
    toml.write_text(toml.read_text() + f"\n[subject_tests]\n{setting}\n")
    shown = subprocess.run(
        [sys.executable, "-m", "digest.cli", "sends", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=newsroom,
    )
    assert shown.returncode == 2, shown.stdout + shown.stderr
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), shown.stderr
    assert message in lines[0], lines[0]


def test_subjects_are_checked_and_fixed_once_the_send_starts(tmp_path: Path, db_url: str) -> None:
    room = _newsroom(tmp_path, db_url, recipients=10, wait=0)
    one = room.digest("edit", EDITION, "--subject-test", "Only one")
    assert one.returncode == 2 and "error: --subject-test: give 2 or 3 subjects" in one.stderr
    four = room.digest("edit", EDITION, *[a for s in "ABCD" for a in ("--subject-test", s)])
    assert four.returncode == 2, four.stderr
    same = room.digest("edit", EDITION, "--subject-test", "A", "--subject-test", " A ")
    assert same.returncode == 2 and "the subjects must differ" in same.stderr
    assert room.digest("send", EDITION).returncode == 0
    late = room.digest("edit", EDITION, "--no-subject-test")  # refused like any edit
    assert late.returncode != 0 and "can no longer change" in late.stderr, late.stderr


def test_a_worker_joining_mails_each_batch_with_its_subject(tmp_path: Path, db_url: str) -> None:
    # 20 readers a second, shared by both: the test's 60 readers take 3 s.
    room = _newsroom(tmp_path, db_url, recipients=120, wait=1, rate=20)
    stop = threading.Event()
    clicker = _click_when_testing(room, winner=1, stop=stop)
    try:
        sender = room.start("send", EDITION)
        wait_until(lambda: _sent(room, rest=False), "the test to start")
        helped = room.digest("worker", "--once")
        assert helped.returncode == 0, helped.stdout + helped.stderr
        assert "worker: 0 recipients" not in helped.stdout, helped.stdout  # it did help
        assert sender.wait(60) == 0
    finally:
        stop.set()
        clicker.join(10)
    _check_everyone_once(room, winner=1)
