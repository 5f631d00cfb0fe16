"""Operators on the web: start a send of an approved edition (dry run first, then a
confirming POST), pause, resume and resend in-doubt batches from /sends, on SQLite and
PostgreSQL, against a real uvicorn server on 127.0.0.1 and the SendGrid-compatible fake
server, which counts every recipient it is handed. Then the same in headless Chromium.

What is asserted is what an operator relies on: every reader is mailed exactly once
whatever is clicked twice or by two people at once, a pause stops the send, each action
names who did it, and nobody who is not logged in (or whose form lacks the token) can
change anything.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted, with_delivery, write_subscribers
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from sqlalchemy import update
from test_browser import CHROMIUM, browser  # noqa: F401  (the fixture: Debian's Chromium)
from test_web import serving, with_env

from digest import config, editor, jobs
from digest.config import Settings
from digest.errors import SendError
from digest.send import control
from digest.send.ledger import report
from digest.store import Store, send_batches
from digest.store.actions import actions_of, record_action
from digest.web import create_app
from digest.web.access import PASSWORD_VARIABLE
from digest.web.send_runs import SendRuns

PASSWORD = "correct horse battery staple"
READERS = 24
PAGE = f"/sends/{EDITION}"


@dataclass
class Room:
    """A newsroom with an approved edition, READERS subscribers and a slow SendGrid."""

    settings: Settings
    store: Store
    fake: FakeSendGrid
    readers: list[str]

    def mailed(self) -> Counter[str]:
        return Counter(self.fake.emails())

    def state(self) -> str:
        row = self.store.sends.get_send(EDITION)
        return "" if row is None else str(row.state)

    def wait(self, what: Callable[[], bool], seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not what():
            assert time.monotonic() < deadline, f"timed out; send is {self.state()!r}"
            time.sleep(0.05)

    def idle(self) -> bool:
        """No web run holds the send."""
        return not control.driver(self.store, EDITION)


@pytest.fixture
def room(tmp_path: Path, db_url: str) -> Iterator[Room]:
    path = copy_newsroom(tmp_path)
    readers = write_subscribers(tmp_path / "subscribers.csv", READERS)
    settings = replace(config.load(path, env={"DIGEST_SECRET_KEY": SECRET}), database_url=db_url)
    drafted(settings)
    # Two readers a batch and a server that takes 0.15 s a request: a send that lasts
    # long enough to be paused part-way.
    settings = with_delivery(settings, backend="sendgrid", batch_size=2)
    with FakeSendGrid(respond_delay=0.15) as fake:
        settings = with_env(
            settings,
            SENDGRID_API_KEY=DEFAULT_KEY,
            SENDGRID_API_HOST=fake.url,
            **{PASSWORD_VARIABLE: PASSWORD},
        )
        store = jobs.open_store(settings)
        try:
            jobs.sync_subscribers(settings, store)
            editor.approve(settings, store, EDITION, "chief")
            yield Room(settings, store, fake, readers)
        finally:
            store.close()


@pytest.fixture
def site(room: Room) -> Iterator[str]:
    with serving(create_app(room.settings, room.store)) as url:
        yield url


class Operator:
    """An operator's browser, as httpx: logged in, following no redirect by itself."""

    def __init__(self, site: str, name: str) -> None:
        self.client = httpx.Client(base_url=site, auth=(name, PASSWORD), timeout=30)
        self._token = ""

    def token(self) -> str:
        """The operator's form token, as the pages give it (one per person, not per page):
        the editor's page has forms until the edition has a send, the send page after."""
        if not self._token:
            for path in (f"/editor/{EDITION}", PAGE):
                found = re.search(r'name="csrf" value="([0-9a-f]+)"', self.client.get(path).text)
                if found:
                    self._token = found.group(1)
                    break
        assert self._token, "no form token"
        return self._token

    def post(self, action: str, token: str | None = None) -> httpx.Response:
        return self.client.post(PAGE, data={"csrf": token or self.token(), "action": action})

    def act(self, action: str) -> str:
        """Post an action as the page's form does; the note the page then shows."""
        answer = self.post(action)
        assert answer.status_code == 303, answer.text
        return note(self.client.get(PAGE).text)


def note(html: str) -> str:
    found = re.search(r'<p class="flash (?:done|error)" role="status">(.*?)</p>', html, re.S)
    return found.group(1) if found else ""


@pytest.fixture
def anna(site: str) -> Iterator[Operator]:
    operator = Operator(site, "anna")
    operator.token()
    yield operator
    operator.client.close()


@pytest.fixture
def bob(site: str) -> Iterator[Operator]:
    operator = Operator(site, "bob")
    operator.token()
    yield operator
    operator.client.close()


def test_the_page_shows_the_dry_run_and_only_the_confirming_post_starts(
    room: Room, anna: Operator
) -> None:
    listed = anna.client.get("/sends").text
    assert f'href="./sends/{EDITION}">Send {EDITION}</a>' in listed
    page = anna.client.get(PAGE)
    assert page.status_code == 200
    dry = jobs.dry_run(room.settings, room.store, EDITION)
    table = re.search(r'<table id="dry-run">(.*?)</table>', page.text, re.S)
    assert table, page.text
    assert f'<th>recipients</th><td class="n">{READERS}</td>' in table.group(1)
    assert '<th>backend</th><td class="n">sendgrid</td>' in table.group(1)
    assert dry.recipients == READERS and dry.batches == READERS // 2 and dry.backend == "sendgrid"
    assert f"Send to {READERS} readers now" in page.text
    # Looking sends nothing and records nothing.
    assert room.state() == "" and room.fake.emails() == []

    assert anna.act("start") == f"started the send of {EDITION}"
    room.wait(lambda: room.state() == "done" and room.idle())
    assert room.mailed() == Counter(room.readers)
    done = anna.client.get(PAGE).text
    assert '<span class="status done">done</span>' in done
    assert f'<strong data-progress="sent">{READERS}</strong> of {READERS}' in done
    assert re.search(r"<strong>anna</strong> · start: started the send", done)
    assert "Nothing: every batch is sent." in done


def test_a_double_submitted_start_starts_one_send(
    room: Room, anna: Operator, bob: Operator
) -> None:
    tokens = {anna: anna.token(), bob: bob.token()}
    answers: list[httpx.Response] = []
    go = threading.Barrier(4)

    def post(operator: Operator) -> None:
        go.wait()
        answers.append(operator.post("start", tokens[operator]))

    # The same form twice from anna (a double click), and bob's at the same moment.
    threads = [threading.Thread(target=post, args=(o,)) for o in (anna, anna, bob, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [303] * 4
    room.wait(lambda: room.state() == "done" and room.idle())
    assert room.mailed() == Counter(room.readers), "someone was mailed twice, or not at all"
    starts = [a for a in actions_of(room.store, EDITION) if a.action == "start"]
    assert len(starts) == 4
    assert sum(not a.outcome.startswith("refused") for a in starts) == 1, starts
    assert all(
        "being run already" in a.outcome or "has a send already" in a.outcome
        for a in starts
        if a.outcome.startswith("refused")
    )


def test_pause_then_resume_mails_every_reader_once(
    room: Room, anna: Operator, bob: Operator
) -> None:
    assert anna.act("start") == f"started the send of {EDITION}"
    room.wait(lambda: len(room.fake.emails()) >= 4)
    said = bob.act("pause")
    assert said.startswith(f"paused the send of {EDITION}"), said
    room.wait(room.idle)
    paused = report(room.store, room.store.sends.get_send(EDITION).id)
    assert paused.state == "paused" and 0 < paused.sent < READERS and paused.in_doubt == 0
    time.sleep(0.5)
    assert len(room.fake.emails()) == paused.sent, "a paused send went on mailing"
    # A second pause is refused, and says why.
    assert anna.act("pause") == f"the send of {EDITION} is paused, not running: nothing to pause"
    page = anna.client.get(PAGE).text
    assert 'value="resume"' in page and 'value="pause"' not in page
    assert re.search(r"<strong>bob</strong> · pause: paused the send", page)

    # Resume, clicked twice: one run.
    token = anna.token()
    first, second = anna.post("resume", token), anna.post("resume", token)
    assert first.status_code == second.status_code == 303
    room.wait(lambda: room.state() == "done" and room.idle())
    assert room.mailed() == Counter(room.readers)
    resumes = [a for a in actions_of(room.store, EDITION) if a.action == "resume"]
    assert [a.who for a in resumes] == ["anna", "anna"]
    assert resumes[0].outcome.startswith("resumed the send") and resumes[1].outcome.startswith(
        "refused"
    )


def test_nobody_else_can_act(room: Room, site: str, anna: Operator) -> None:
    token = anna.token()
    with httpx.Client(base_url=site) as stranger:
        refused = stranger.post(PAGE, data={"csrf": token, "action": "start"})
        assert refused.status_code == 401
        assert stranger.get(f"{PAGE}/progress").status_code == 401
    assert anna.client.post(PAGE, data={"action": "start"}).status_code == 403
    wrong = anna.client.post(PAGE, data={"csrf": "0" * 64, "action": "start"})
    assert wrong.status_code == 403 and "no valid editor token" in wrong.text
    elsewhere = anna.client.post(
        PAGE, data={"csrf": token, "action": "start"}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403
    assert anna.client.post(PAGE, data={"csrf": token, "action": "nuke"}).status_code == 400
    time.sleep(0.3)
    assert room.state() == "" and room.fake.emails() == []
    assert actions_of(room.store, EDITION) == []


def test_an_unapproved_edition_is_not_started(room: Room, anna: Operator) -> None:
    editor.withdraw(room.store, EDITION, "chief")
    page = anna.client.get(PAGE).text
    assert "Only an approved edition is sent from here" in page and 'value="start"' not in page
    said = anna.act("start")
    assert said.startswith(f"edition {EDITION} is draft, not approved"), said
    assert room.state() == "" and room.fake.emails() == []


def test_resend_in_doubt_only_once_paused_and_only_those_batches(
    room: Room, anna: Operator
) -> None:
    anna.act("start")
    room.wait(lambda: room.state() == "done" and room.idle())
    send_id = room.store.sends.get_send(EDITION).id
    # As a crash leaves it: batch 3 in doubt for an hour, past [delivery]
    # event_wait_seconds with no SendGrid event (its two readers were in fact mailed).
    with room.store.begin() as conn:
        conn.execute(
            update(send_batches)
            .where(send_batches.c.send_id == send_id, send_batches.c.number == 3)
            .values(state="sending", updated_at=datetime.now(UTC) - timedelta(hours=1))
        )
    room.store.sends.set_send_state(send_id, "sending")
    said = anna.act("resend in doubt")
    assert "pause it first" in said, said
    anna.act("pause")
    page = anna.client.get(PAGE).text
    assert 'value="resend in doubt"' in page and 'id="in-doubt"' in page
    said = anna.act("resend in doubt")
    assert said.startswith(f"resending the send of {EDITION}"), said
    room.wait(lambda: room.state() == "done" and room.idle())
    twice = {email for email, n in room.mailed().items() if n == 2}
    assert len(twice) == 2 and set(room.mailed()) == set(room.readers)
    assert all(n <= 2 for n in room.mailed().values())


def test_the_progress_endpoint_follows_the_ledger(room: Room, anna: Operator) -> None:
    assert anna.client.get(f"{PAGE}/progress").json() == {
        "edition": EDITION,
        "state": "",
        "running": False,
    }
    anna.act("start")
    seen: list[dict[str, Any]] = []
    room.wait(
        lambda: (
            seen.append(anna.client.get(f"{PAGE}/progress").json())
            or (seen[-1].get("state") == "done" and not seen[-1]["running"])
        )
    )
    sent = [s["sent"] for s in seen if "sent" in s]
    assert sent == sorted(sent) and sent[-1] == READERS
    assert any(s["running"] and s.get("driver") == "anna" for s in seen)
    script = anna.client.get("/sends.js")
    assert script.status_code == 200 and "data-progress-url" in script.text
    page = anna.client.get(PAGE)
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_app_stopping_mid_send_pauses_it_and_the_next_start_finishes_it(
    room: Room,
) -> None:
    with serving(create_app(room.settings, room.store)) as url:
        operator = Operator(url, "anna")
        operator.token()
        operator.act("start")
        room.wait(lambda: len(room.fake.emails()) >= 4)
    # The app stopped (uvicorn's shutdown, as on SIGTERM): its run paused the send.
    assert room.state() == "paused" and room.idle()
    assert actions_of(room.store, EDITION)[-1].action == "interrupted"
    stopped_at = len(room.fake.emails())
    assert stopped_at < READERS
    with serving(create_app(room.settings, room.store)):
        room.wait(lambda: room.state() == "done" and room.idle())
    assert room.mailed() == Counter(room.readers)
    assert [a.action for a in actions_of(room.store, EDITION)][-2:] == [
        "resumed after a restart",
        "finished",
    ]


def test_an_operator_pause_is_not_undone_by_a_restart(room: Room, anna: Operator) -> None:
    anna.act("start")
    room.wait(lambda: len(room.fake.emails()) >= 4)
    anna.act("pause")
    room.wait(room.idle)
    runs = SendRuns(room.settings, room.store)
    assert runs.resume_interrupted(patience=0.5) == []
    assert room.state() == "paused"


def test_the_command_line_pauses_too_and_may_not_resend_under_a_web_run(
    room: Room, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from digest.cli import app as cli

    jobs.send(room.settings, room.store, EDITION, limit=1)
    row = room.store.sends.get_send(EDITION)
    room.store.sends.set_send_state(row.id, "sending")
    result = CliRunner().invoke(
        cli, ["sends", EDITION, "--pause", "--config", str(room.settings.path)],
        env={"DIGEST_DATABASE_URL": room.settings.database_url, "DIGEST_SECRET_KEY": SECRET},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "paused the send" in result.output
    assert room.state() == "paused"
    assert actions_of(room.store, EDITION)[-1].who.endswith("(command line)")
    # While a web run holds the send, resending in doubt would race its batches in flight.
    drive = control.Drive(room.store, EDITION, "elsewhere|x|anna")
    assert drive.take()
    try:
        with pytest.raises(SendError, match="being sent from the web"):
            jobs.send(room.settings, room.store, EDITION, resume=True, retry_in_doubt=True)
    finally:
        drive.release()


# -- in a browser ----------------------------------------------------------------------


def test_an_operator_starts_pauses_and_resumes_in_chromium(
    room: Room,
    site: str,
    browser: Any,  # noqa: F811
) -> None:
    room.fake.respond_delay = 0.5  # 12 batches, 6 s: time to see it move and to pause it
    context = browser.new_context(http_credentials={"username": "anna", "password": PASSWORD})
    page = context.new_page()
    try:
        page.goto(f"{site}/sends")
        page.click(f"text=Send {EDITION}")
        assert page.locator("#dry-run").inner_text().count(str(READERS)) >= 1
        page.click(f"button:has-text('Send to {READERS} readers now')")
        page.wait_for_selector("button:has-text('Pause')", timeout=20_000)
        # The figures move without a reload (sends.js reads the progress endpoint).
        page.wait_for_function(
            "Number(document.querySelector('[data-progress=sent]').textContent) >= 4",
            timeout=20_000,
        )
        page.click("button:has-text('Pause')")
        page.wait_for_selector("button:has-text('Resume')", timeout=20_000)
        assert room.state() == "paused"
        paused_at = len(room.fake.emails())
        assert 0 < paused_at < READERS
        assert "anna · pause: paused the send" in page.locator("#who-did-what").inner_text()
        page.click("button:has-text('Resume')")
        page.wait_for_selector(".status.done", timeout=30_000)
        assert "Nothing: every batch is sent." in page.content()
    finally:
        context.close()
    room.wait(room.idle)
    assert room.mailed() == Counter(room.readers), "every reader exactly once"
    who = [(a.who, a.action) for a in actions_of(room.store, EDITION)]
    assert ("anna", "start") in who and ("anna", "pause") in who and ("anna", "resume") in who


def test_a_web_app_killed_mid_send_is_resumed_by_the_next_once_its_lease_lapses(
    room: Room,
) -> None:
    # As a kill leaves it: a web start recorded, the send `sending` with batches left,
    # and the dead run's lease still unexpired for a moment.
    jobs.send(room.settings, room.store, EDITION, limit=3)
    row = room.store.sends.get_send(EDITION)
    room.store.sends.set_send_state(row.id, "sending")
    record_action(room.store, EDITION, "anna", "start", f"started the send of {EDITION}")
    room.store.runs.take_lease(control.lease_name(EDITION), "dead|run|anna", timedelta(seconds=1))
    assert control.driver(room.store, EDITION) == "dead|run|anna"
    before = len(room.fake.emails())
    runs = SendRuns(room.settings, room.store)
    try:
        assert runs.resume_interrupted(patience=10) == [EDITION]
        room.wait(lambda: room.state() == "done" and room.idle())
    finally:
        runs.close()
    assert before == 6 and room.mailed() == Counter(room.readers)
    assert actions_of(room.store, EDITION)[-1].outcome.startswith("resume by digest web: done")


def test_a_pause_between_a_resume_and_its_start_is_not_overruled(room: Room) -> None:
    jobs.send(room.settings, room.store, EDITION, limit=2)
    row = room.store.sends.get_send(EDITION)
    assert row.state == "paused"
    seen = room.store.sends.send_by_id(row.id).updated_at
    # A resume read the send; then an operator paused it (again) before the resume set it
    # going: the resume's start finds the send changed, and leaves it paused.
    time.sleep(0.01)
    room.store.sends.set_send_state(row.id, "sending")
    control.pause(room.store, EDITION, "bob")
    assert not room.store.sends.start_send_if_unchanged(row.id, seen)
    assert room.state() == "paused"
    # Unchanged since it was read, it starts.
    fresh = room.store.sends.send_by_id(row.id).updated_at
    assert room.store.sends.start_send_if_unchanged(row.id, fresh)
    assert room.state() == "sending"
