"""The editor's and the operators' pages on a real uvicorn server on 127.0.0.1, with a
SQLite store of the sample newsroom: Basic auth, the form token and the Origin check,
every change an editor makes from the page, the preview, a test copy, read-only sent
editions, the sends pages, and one run in headless Chromium at phone and desktop width.
"""

from __future__ import annotations

import base64
import logging
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.newsroom import DAY, EDITION, SECRET, copy_newsroom, drafted, with_delivery
from sqlalchemy import update
from test_browser import browser  # noqa: F401  (the fixture: Debian's headless Chromium)
from test_web import serving, with_env

from digest import config, editor, jobs, rank
from digest.config import Settings
from digest.models import Pick, Story
from digest.store import Store, send_batches
from digest.web import create_app
from digest.web.access import PASSWORD_VARIABLE

PASSWORD = "correct horse battery staple"
PAGE = f"/editor/{EDITION}"
WEB = "`digest web`"


def five_more(settings: Settings) -> Settings:
    """Five stories in More, so some of the sample newsroom's window is left over."""
    return replace(settings, edition=replace(settings.edition, more_count=5))


@pytest.fixture(scope="module")
def drafted_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the sample collected and edition 2025-12-05 drafted, made once:
    each test starts from a copy of it rather than collecting and ranking again."""
    path = copy_newsroom(tmp_path_factory.mktemp("drafted"))
    settings = five_more(config.load(path, env={"DIGEST_SECRET_KEY": SECRET}))
    drafted(settings)
    return settings.data_dir / "digest.db"


@pytest.fixture
def sample(settings: Settings) -> Settings:
    return five_more(settings)


@pytest.fixture
def store(sample: Settings, drafted_db: Path) -> Iterator[Store]:
    """SQLite only: these tests are about the pages, the store is tested elsewhere."""
    sample.data_dir.mkdir(parents=True, exist_ok=True)
    source, copy = sqlite3.connect(drafted_db), sqlite3.connect(sample.data_dir / "digest.db")
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    opened = jobs.open_store(sample)
    yield opened
    opened.close()


@pytest.fixture
def site(sample: Settings, store: Store) -> Iterator[str]:
    with serving(create_app(with_env(sample, **{PASSWORD_VARIABLE: PASSWORD}), store)) as url:
        yield url


@dataclass
class Newsroom:
    """An editor's browser, as httpx: logged in, following no redirect by itself."""

    client: httpx.Client
    _token: str = ""

    def page(self, path: str = PAGE) -> httpx.Response:
        answer = self.client.get(path)
        assert answer.status_code in (200, 404), answer.text
        return answer

    def token(self, path: str = PAGE) -> str:
        """The editor's form token, as the page gives it (one per editor, not per page)."""
        if not self._token:
            found = re.search(r'name="csrf" value="([0-9a-f]+)"', self.page(path).text)
            assert found, "no form token on the page"
            self._token = found.group(1)
        return self._token

    def post(self, action: str, ref: str = "", path: str = PAGE, **extra: str) -> httpx.Response:
        fields = {"csrf": self.token(path), "action": action, "ref": ref, **extra}
        return self.client.post(path, data=fields)

    def change(self, action: str, ref: str = "", path: str = PAGE) -> httpx.Response:
        """Post a change as the page's form does, and come back to the page."""
        return self.follow(self.post(action, ref, path))

    def follow(self, answer: httpx.Response) -> httpx.Response:
        assert answer.status_code == 303, answer.text
        return self.client.get(answer.url.join(answer.headers["location"]))


@pytest.fixture
def anna(site: str) -> Iterator[Newsroom]:
    with httpx.Client(base_url=site, auth=("anna", PASSWORD)) as client:
        yield Newsroom(client)


def section(html: str, name: str) -> str:
    """One card of the page, by its id."""
    found = re.search(rf'<section class="card[^"]*" id="{name}">(.*?)</section>', html, re.S)
    return found.group(1) if found else ""


def flash(html: str) -> str:
    found = re.search(r'<p class="flash (?:done|error)" role="status">(.*?)</p>', html, re.S)
    return found.group(1) if found else ""


def plain(title: str) -> bool:
    """A headline that reads the same in HTML as in text (no &, quotes, <, >)."""
    return not set(title) & set("&'\"<>’")


def view(settings: Settings, store: Store) -> editor.EditorView:
    return editor.view(settings, store, EDITION)


def more_titles(settings: Settings, store: Store) -> list[str]:
    return [p.story.title for p in view(settings, store).edition.more]


def plain_more(settings: Settings, store: Store) -> Pick:
    return next(p for p in view(settings, store).edition.more if plain(p.story.title))


# -- who may come in -----------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_without_a_password_the_pages_are_off(sample: Settings, store: Store) -> None:
    records = Records()
    logger = logging.getLogger("digest.web")
    logger.addHandler(records)
    try:
        app = create_app(sample, store)
    finally:
        logger.removeHandler(records)
    off = [line for line in records.lines if PASSWORD_VARIABLE in line]
    assert off == [f"editor pages are off: set {PASSWORD_VARIABLE} in the environment of {WEB}"]
    with serving(app) as site, httpx.Client(base_url=site) as client:
        for method, path in (
            ("GET", "/editor"),
            ("GET", PAGE),
            ("GET", f"{PAGE}/preview"),
            ("POST", PAGE),
            ("GET", "/sends"),
            ("GET", f"/sends/{EDITION}"),
        ):
            answer = client.request(method, path, auth=("anna", "anything"))
            assert answer.status_code == 503, (path, answer.status_code)
            assert f"editor pages are off: set {PASSWORD_VARIABLE}" in answer.text
            assert "`digest web`" in answer.text
        assert client.get("/healthz").text == "ok"  # the readers' side is on
    assert view(sample, store).events == []


def test_a_wrong_password_or_none_is_401(site: str, sample: Settings, store: Store) -> None:
    with httpx.Client(base_url=site) as client:
        for auth in (None, ("anna", "wrong"), ("anna", PASSWORD[:-1]), ("", PASSWORD)):
            for path in (PAGE, "/sends", f"{PAGE}/preview", "/editor"):
                answer = client.get(path, auth=auth)
                assert answer.status_code == 401, (auth, path)
                assert answer.headers["www-authenticate"].startswith("Basic ")
                assert PASSWORD not in answer.text
            assert client.post(PAGE, auth=auth, data={"action": "reset"}).status_code == 401
        answer = client.get(PAGE, headers={"Authorization": "Basic not-base64!"})
        assert answer.status_code == 401
    assert view(sample, store).events == []


def test_too_many_wrong_passwords_lock_the_address_out_for_a_while(
    sample: Settings, store: Store
) -> None:
    from digest.web.access import FAILURE_WINDOW, MAX_FAILURES

    with (
        serving(create_app(with_env(sample, **{PASSWORD_VARIABLE: PASSWORD}), store)) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert client.get(PAGE, auth=("anna", PASSWORD)).status_code == 200
        for _ in range(MAX_FAILURES):
            assert client.get(PAGE, auth=("mallory", "guess")).status_code == 401
        # Now even the right password is refused from this address, and it says how long.
        locked = client.get(PAGE, auth=("anna", PASSWORD))
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= FAILURE_WINDOW + 1
        assert "too many wrong passwords" in locked.text and PASSWORD not in locked.text
        assert client.get("/healthz").text == "ok"  # readers are not locked out


def test_a_lock_out_ends_when_the_wrong_passwords_are_old_enough(sample: Settings) -> None:
    from starlette.requests import Request

    from digest.web.access import FAILURE_WINDOW, MAX_FAILURES, Editor, Guard
    from digest.web.pages import Pages

    settings = with_env(sample, **{PASSWORD_VARIABLE: PASSWORD})
    guard = Guard(settings, Pages(settings))
    now = [1000.0]
    guard.clock = lambda: now[0]

    def attempt(password: str, client: str = "203.0.113.9") -> int:
        token = base64.b64encode(f"anna:{password}".encode()).decode()
        scope = {
            "type": "http", "method": "GET", "path": PAGE, "query_string": b"",
            "headers": [(b"authorization", f"Basic {token}".encode())],
            "client": (client, 50000),
        }  # fmt: skip
        admitted = guard.admit(Request(scope))
        return 200 if isinstance(admitted, Editor) else admitted.status_code

    for second in range(MAX_FAILURES):
        now[0] = 1000.0 + second
        assert attempt("guess") == 401
    assert attempt(PASSWORD) == 429
    assert attempt(PASSWORD, client="198.51.100.7") == 200  # another address is not locked
    now[0] = 1000.0 + FAILURE_WINDOW + 0.5  # the first wrong password is old enough now
    assert attempt(PASSWORD) == 200


def test_a_post_without_the_form_token_changes_nothing(
    anna: Newsroom, site: str, sample: Settings, store: Store
) -> None:
    story = plain_more(sample, store).story
    before = more_titles(sample, store)
    with httpx.Client(base_url=site, auth=("bob", PASSWORD)) as bob:
        bobs_token = Newsroom(bob).token()
    for fields in (
        {"action": "drop", "ref": story.url},
        {"action": "drop", "ref": story.url, "csrf": ""},
        {"action": "drop", "ref": story.url, "csrf": "0" * 64},
        {"action": "drop", "ref": story.url, "csrf": bobs_token},  # another editor's
    ):
        answer = anna.client.post(PAGE, data=fields)
        assert answer.status_code == 403, fields
        assert "\n" not in answer.text.strip() and "nothing was changed" in answer.text
    assert more_titles(sample, store) == before
    assert view(sample, store).events == []
    assert "Dropped" not in anna.page().text


def test_a_post_from_another_site_is_refused(
    anna: Newsroom, site: str, sample: Settings, store: Store
) -> None:
    story = plain_more(sample, store).story
    fields = {"csrf": anna.token(), "action": "drop", "ref": story.url}
    for origin in ("https://attacker.example", "null", "http://127.0.0.1:1"):
        answer = anna.client.post(PAGE, data=fields, headers={"Origin": origin})
        assert answer.status_code == 403, origin
        assert "another site" in answer.text
    assert view(sample, store).overrides.dropped == []
    # The page's own origin, as a browser sends it, is fine.
    answer = anna.client.post(PAGE, data=fields, headers={"Origin": site})
    assert answer.status_code == 303
    assert view(sample, store).overrides.dropped == [story.url]


def test_pages_say_no_cache_no_framing_no_script(anna: Newsroom) -> None:
    page = anna.page()
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    policy = page.headers["content-security-policy"]
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert "<script" not in page.text
    assert f'<iframe src="{EDITION}/preview" sandbox' in page.text
    assert 'name="viewport"' in page.text
    preview = anna.client.get(f"{PAGE}/preview")
    assert preview.status_code == 200
    assert preview.headers["content-security-policy"].startswith(
        "sandbox; default-src 'none'; img-src * data:; style-src 'unsafe-inline'"
    )
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert "%%" not in preview.text and "Good morning." in preview.text
    sends = anna.client.get("/sends")
    assert sends.headers["cache-control"] == "no-store"


# -- changes from the page -------------------------------------------------------------


def test_drop_a_story(anna: Newsroom, sample: Settings, store: Store) -> None:
    story = plain_more(sample, store).story
    page = anna.page()
    assert story.title in section(page.text, "more")
    assert story.title in anna.client.get(f"{PAGE}/preview").text

    page = anna.change("drop", story.url)
    assert page.status_code == 200
    assert flash(page.text) == f"dropped “{story.title}”"
    assert story.title not in section(page.text, "more")
    assert story.title not in section(page.text, "most-read")
    assert story.title in section(page.text, "dropped")
    assert story.title not in anna.client.get(f"{PAGE}/preview").text
    changes = section(page.text, "changes")
    assert "<strong>anna</strong>" in changes and f"dropped “{story.title}”" in changes
    assert [(e.who, e.action) for e in view(sample, store).events] == [
        ("anna", f"dropped “{story.title}”")
    ]

    page = anna.change("restore", story.url)
    assert flash(page.text) == f"restored “{story.title}”"
    assert story.title in anna.client.get(f"{PAGE}/preview").text


def test_drop_and_approve_on_postgresql(sample: Settings, pg_url: str) -> None:
    """The pages on the scale path's database: the same change, the same record."""
    store = Store.open(pg_url)
    try:
        jobs.collect(sample, store)
        jobs.draft(sample, store, DAY)
        app = create_app(with_env(sample, **{PASSWORD_VARIABLE: PASSWORD}), store)
        with serving(app) as url, httpx.Client(base_url=url, auth=("anna", PASSWORD)) as client:
            newsroom = Newsroom(client)
            story = plain_more(sample, store).story
            page = newsroom.change("drop", story.url)
            assert flash(page.text) == f"dropped “{story.title}”"
            assert story.title not in client.get(f"{PAGE}/preview").text
            page = newsroom.change("approve")
            assert flash(page.text).startswith("approved: ")
        assert view(sample, store).edition.status == "approved"
        assert [(e.who, e.action) for e in view(sample, store).events] == [
            ("anna", f"dropped “{story.title}”"),
            ("anna", "approved the edition"),
        ]
    finally:
        store.close()


def test_pin_a_story_from_the_window(anna: Newsroom, sample: Settings, store: Store) -> None:
    others = view(sample, store).others
    assert others, "the sample newsroom has more stories than slots"
    story = others[0]
    assert story.title in section(anna.page().text, "others")
    page = anna.change("pin", story.url)
    assert flash(page.text) == f"pinned “{story.title}”"
    more = section(page.text, "more")
    assert story.title in more and "pinned by an editor" in more
    assert story.title not in section(page.text, "others")
    assert more_titles(sample, store)[0] == story.title
    # Pinned now, so its button says Unpin.
    item = more.split("</li>")[0]
    assert 'value="unpin"' in item and 'value="pin"' not in item


def test_up_and_down_reorder_more(anna: Newsroom, sample: Settings, store: Store) -> None:
    first, second, third, *_ = view(sample, store).edition.more
    page = anna.change("down", first.story.url)
    assert flash(page.text) == f"moved “{first.story.title}” down"
    assert more_titles(sample, store)[:3] == [
        second.story.title,
        first.story.title,
        third.story.title,
    ]
    page = anna.change("up", third.story.url)
    order = [second.story.title, third.story.title, first.story.title]
    assert more_titles(sample, store)[:3] == order
    more = section(page.text, "more")
    found = [more.index(title.replace("'", "&#39;")) for title in order]
    assert found == sorted(found), "the page shows More in its new order"

    page = anna.change("up", second.story.url)  # first already
    assert "first in More already" in flash(page.text)
    assert more_titles(sample, store)[:3] == order


def test_the_subject_form(anna: Newsroom, sample: Settings, store: Store) -> None:
    hostile = '<script>alert("x")</script> Snow & ice'
    page = anna.change("subject", hostile)
    assert view(sample, store).edition.subject == hostile
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Snow &amp; ice" in page.text
    assert "set the subject to “&lt;script&gt;" in flash(page.text)
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Snow &amp; ice"' in page.text

    page = anna.change("subject", "x" * 200)
    assert "keep it under 150" in flash(page.text)
    assert view(sample, store).edition.subject == hostile

    page = anna.change("subject", "")
    edition = view(sample, store).edition
    assert edition.lead is not None and edition.subject == edition.lead.story.title
    assert "let the lead&#39;s title be the subject" in flash(page.text)


def test_the_subject_test_form(anna: Newsroom, sample: Settings, store: Store) -> None:
    from digest.store.subjects import subject_test

    page = anna.change("subject_test", "Snow & ice\r\n\r\nWhat the storm closed\r\n")
    assert flash(page.text) == "subject test of 2 subjects"
    assert "<strong>Subject test:</strong> 1. Snow &amp; ice; 2. What the storm closed" in page.text
    test = subject_test(store, view(sample, store).edition.name)
    assert test is not None and test.subjects == ("Snow & ice", "What the storm closed")

    page = anna.change("subject_test", "Only one")
    assert "give 2 or 3 subjects" in flash(page.text)
    page = anna.change("subject_test", "")
    assert flash(page.text) == "no subject test"
    assert subject_test(store, view(sample, store).edition.name) is None


def test_approve_and_an_edit_after_it_withdraws_it(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    page = anna.change("approve")
    assert flash(page.text).startswith("approved: “")
    assert '<span class="status approved">approved</span>' in page.text
    assert 'value="withdraw"' in page.text and 'value="approve"' not in page.text
    assert view(sample, store).edition.status == "approved"

    page = anna.change("drop", plain_more(sample, store).story.url)
    assert "approval withdrawn by the change; approve it again" in flash(page.text)
    assert '<span class="status draft">draft</span>' in page.text
    assert view(sample, store).edition.status == "draft"

    anna.change("approve")
    page = anna.change("withdraw")
    assert flash(page.text) == "approval withdrawn: the edition is a draft again"
    assert view(sample, store).edition.status == "draft"
    assert [e.action for e in view(sample, store).events][-2:] == [
        "approved the edition",
        "withdrew the approval",
    ]


def test_undo_all_changes(anna: Newsroom, sample: Settings, store: Store) -> None:
    ranked = more_titles(sample, store)
    anna.change("drop", plain_more(sample, store).story.url)
    assert 'value="reset"' in anna.page().text
    page = anna.change("reset")
    assert flash(page.text) == "undid every change"
    assert more_titles(sample, store) == ranked
    assert 'value="reset"' not in page.text


def test_send_me_a_test(anna: Newsroom, sample: Settings, store: Store) -> None:
    outbox = sample.delivery.outbox_dir / f"test-{EDITION}"
    page = anna.change("test", "  Anna.Editor@Example.org ")
    assert flash(page.text) == f"sent a [TEST] copy of {EDITION} to anna.editor@example.org"
    assert flash(section(page.text, "test")), "shown beside the test form"
    (eml,) = outbox.glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=default_policy)
    assert message["To"] == "anna.editor@example.org"
    assert str(message["Subject"]).startswith("[TEST] ")

    for address, why in (("bob@", "is not an e-mail address"), ("", "give the address")):
        page = anna.change("test", address)
        assert why in flash(section(page.text, "test")), address
    assert len(list(outbox.glob("*.eml"))) == 1
    assert store.sends.get_send(EDITION) is None and view(sample, store).events == []


def test_a_missing_edition_offers_a_draft(anna: Newsroom, store: Store) -> None:
    today = anna.client.get("/editor")
    assert today.status_code == 303
    assert re.fullmatch(r"editor/\d{4}-\d{2}-\d{2}", today.headers["location"])

    later = (DAY + timedelta(days=1)).isoformat()
    page = anna.page(f"/editor/{later}")
    assert page.status_code == 404
    assert "Draft it now" in page.text and 'value="draft"' in page.text
    assert anna.client.get(f"/editor/{later}/preview").status_code == 404
    page = anna.change("draft", path=f"/editor/{later}")
    assert page.status_code == 200 and flash(page.text).startswith(f"drafted edition {later}")
    assert store.editions.load_edition(later) is not None

    for odd in ("not-a-date", "2025-13-45", "..%2Fetc"):
        assert anna.client.get(f"/editor/{odd}").status_code == 404, odd


def test_only_web_links_are_links(anna: Newsroom, sample: Settings, store: Store) -> None:
    window = rank.edition_window(DAY, sample.newsroom.time_zone, sample.edition)
    odd = Story(
        url="javascript:alert(1)",
        title="A story with a strange address",
        published_at=window.end - timedelta(hours=1),
        section="News",
    )
    store.stories.upsert_stories([odd])
    page = anna.page()
    assert odd.title in section(page.text, "others")
    assert "javascript:" not in page.text.replace('value="javascript:alert(1)"', "")
    assert 'href="https://news.example.org/' in page.text


# -- once there is a send --------------------------------------------------------------


def test_an_edition_with_a_send_is_read_only(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    token = anna.token()
    story = plain_more(sample, store).story
    jobs.sync_subscribers(sample, store)
    jobs.send(sample, store, EDITION)
    page = anna.page()
    assert "<form" not in page.text and "<button" not in page.text
    assert f'href="../sends/{EDITION}"' in page.text
    assert "can no longer change" in page.text
    page = anna.follow(
        anna.client.post(PAGE, data={"csrf": token, "action": "drop", "ref": story.url})
    )
    assert flash(page.text) == (
        f"edition {EDITION} is being sent or was sent, so it can no longer change; "
        f"`digest sends {EDITION}` shows how far it got"
    )
    assert view(sample, store).overrides.dropped == []
    assert story.title in anna.client.get(f"{PAGE}/preview").text


def test_the_sends_pages(anna: Newsroom, sample: Settings, store: Store) -> None:
    assert "No edition has been sent yet" in anna.page("/sends").text
    jobs.sync_subscribers(sample, store)
    small = with_delivery(sample, batch_size=2)
    result = jobs.send(small, store, EDITION)
    assert result.state == "done" and result.recipients > 4

    listed = anna.page("/sends").text
    row = re.search(rf"<tr>\s*<td><a href=\"\./sends/{EDITION}\">.*?</tr>", listed, re.S)
    assert row, listed
    cells = re.sub(r"<[^>]+>", " ", row.group(0)).split()
    assert "done" in cells and f"{result.sent}" in cells and f"{result.recipients}" in cells
    assert "Start an approved edition's send" in listed and "digest send EDITION" in listed

    detail = anna.page(f"/sends/{EDITION}").text
    sent = f'<strong data-progress="sent">{result.sent}</strong> of {result.recipients}'
    assert f"{sent} recipients sent" in detail
    assert f"in {result.batches} batches, through outbox" in detail
    assert "Nothing: every batch is sent." in detail
    assert "--resume" not in detail

    # As a crash and a refusing server leave a send: batch 1 in doubt, batch 2 failed.
    with store.begin() as conn:
        for number, state, error in ((1, "sending", None), (2, "failed", "550 no mailbox")):
            conn.execute(
                update(send_batches)
                .where(send_batches.c.send_id == result.send_id, send_batches.c.number == number)
                .values(state=state, error=error, attempts=3, response_code=None)
            )
    store.sends.set_send_state(result.send_id, "incomplete", "1 batch failed, 1 in doubt")
    detail = anna.page(f"/sends/{EDITION}").text
    assert '<span class="status incomplete">incomplete</span>' in detail
    assert re.search(r"Batch 1 \(\d recipients?\), in doubt since", section(detail, "in-doubt"))
    failed = section(detail, "failed")
    assert re.search(r"Batch 2 \(\d recipients?\) failed after 3 tries: 550 no mailbox", failed)
    assert f"<code>digest send {EDITION} --resume</code>" in detail
    assert f"<code>digest send {EDITION} --resume --retry-in-doubt</code>" in detail
    # What the ledger allows now is a button (tests/test_web_operators.py presses them).
    assert 'value="resume"' in detail and 'value="resend in doubt"' in detail
    assert 'value="pause"' not in detail

    missing = anna.page("/sends/2024-01-01")
    assert missing.status_code == 404 and "has not been sent" in missing.text


# -- in a browser ----------------------------------------------------------------------


def test_the_preview_shows_published_pictures_and_nothing_else_of_the_folder(
    anna: Newsroom, sample: Settings
) -> None:
    html = anna.page(f"{PAGE}/preview").text
    assert "file:" not in html
    found = re.search(r'src="/media/([0-9a-f]{32}\.png)"', html)
    assert found, "the newsroom's logo, a local file, is not published for the browser"
    logo = sample.path.parent / "examples/sample-newsroom/images/logo.png"
    # Pictures are public, as every email links to them: no password, cached for good.
    with httpx.Client(base_url=str(anna.client.base_url)) as stranger:
        picture = stranger.get(f"/media/{found.group(1)}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content == logo.read_bytes()
        assert "immutable" in picture.headers["cache-control"]
        for path in (
            "%2e%2e/digest.toml",
            "..%2fdigest.db",
            "digest.db",
            "secret.key",
            f"{'0' * 32}.png",  # our kind of name, but never published
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        ):
            assert stranger.get(f"/media/{path}").status_code == 404, path


def test_an_editor_drops_a_story_in_the_browser(
    request: pytest.FixtureRequest, site: str, sample: Settings, store: Store
) -> None:
    """At phone and at desktop width, one story each: both in one test, so one Chromium
    (test_browser's, per module) serves both, whichever xdist worker runs it."""
    chromium: Any = request.getfixturevalue("browser")
    dropped: list[str] = []
    for width in (375, 1280):
        story = plain_more(sample, store).story
        context = chromium.new_context(
            viewport={"width": width, "height": 900},
            http_credentials={"username": "anna", "password": PASSWORD},
        )
        try:
            page = context.new_page()
            page.goto(f"{site}{PAGE}" + ("?width=375" if width == 375 else ""))
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            preview = page.frame_locator("iframe")
            preview.get_by_text("Good morning.").wait_for()
            assert story.title in preview.locator("body").inner_text()
            # The sample newsroom's pictures are local files, published under /media/.
            frame = next(f for f in page.frames if f.url.endswith("/preview"))
            frame.wait_for_load_state("load")
            shown = frame.evaluate(
                "[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])"
            )
            local = [(src, w) for src, w in shown if src.startswith("/media/")]
            assert local and all(w > 0 for _, w in local), shown

            item = page.locator("#more li.story", has_text=story.title)
            with page.expect_navigation():
                item.get_by_role("button", name="Drop").click()

            assert page.locator(".flash").inner_text() == f"dropped “{story.title}”"
            assert page.locator("#more li.story", has_text=story.title).count() == 0
            assert page.locator("#dropped", has_text=story.title).count() == 1
            preview.get_by_text("Good morning.").wait_for()  # the new preview, loaded
            assert story.title not in preview.locator("body").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            # The phone width rode along with the form.
            assert page.locator("iframe.phone").count() == (1 if width == 375 else 0)
        finally:
            context.close()
        dropped.append(f"dropped “{story.title}”")
    assert [(e.who, e.action) for e in view(sample, store).events] == [
        ("anna", action) for action in dropped
    ]


def test_the_note_form_and_why_each_other_story_is_out(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    page = anna.change("note", "Snow day.\n\nSee [closures](https://example.org/closures).")
    assert (
        flash(page.text)
        == "set the note to readers: “Snow day. See [closures](https://example.org/closures).”"
    )
    assert view(sample, store).edition.note.startswith("Snow day.")
    assert ">Snow day.\n\nSee [closures](https://example.org/closures).</textarea>" in page.text
    assert "anna</strong> set the note to readers" in section(page.text, "changes")
    # Every story of the window that is not in the edition says why.
    others = section(page.text, "others")
    assert others.count('class="why-not"') == len(view(sample, store).others) > 0
    assert "why not: score 0." in others and "under the cut" in others
    page = anna.change("note", "[x](javascript:alert(1))")
    assert "is not an http(s) address" in flash(page.text)
    assert view(sample, store).edition.note.startswith("Snow day.")
