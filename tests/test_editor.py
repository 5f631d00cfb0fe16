"""Editors steer a draft: lead, pin, drop, reorder, subject, approve (`digest edit`)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import ROOT

from digest import editor, jobs
from digest.config import Settings
from digest.editor import Change, EditError
from digest.models import Overrides
from digest.store import Store

DAY = date(2025, 12, 5)
NAME = DAY.isoformat()
TRUMP = "https://news.example.org/news/trump-to-meet-putin-at-joint-base-elmendorf-richardson-in-anchorage/"
GALLERY = "https://news.example.org/news/gallery-walk-guide-for-friday-dec-5/"


@pytest.fixture
def drafted(settings: Settings, store: Store) -> Store:
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    return store


def urls(picks: list) -> list[str]:  # type: ignore[type-arg]
    return [p.story.url for p in picks]


def test_a_dropped_story_is_in_no_slot_and_more_fills_up_behind_it(
    settings: Settings, drafted: Store
) -> None:
    before = jobs.load_edition(drafted, NAME)
    assert before.lead is not None and before.lead.story.url == TRUMP
    assert TRUMP not in urls(before.most_read)  # shown above, so not again

    result = editor.edit(settings, drafted, NAME, [Change("drop", "Trump to meet Putin")], "anna")

    after = result.edition
    assert result.actions == [
        "dropped “Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage”"
    ]
    assert TRUMP not in urls(after.picks)  # not the lead, not in More, not in Most Read
    assert after.lead is not None and after.subject == after.lead.story.title
    # The window has nine stories; the other eight are all still placed, one of them
    # now the lead.
    assert {after.lead.story.url, *urls(after.more)} == set(urls(before.more))
    shown = {after.lead.story.url, *urls(after.more)}
    assert after.most_read and not shown & set(urls(after.most_read))
    assert [o.reason for o in after.left_out if o.story.url == TRUMP] == ["dropped"]
    # What is stored is what the editor sees, and the preview copy was rendered again.
    assert urls(jobs.load_edition(drafted, NAME).picks) == urls(after.picks)
    html = jobs.render_edition(settings, drafted, NAME).html
    assert "Elmendorf" not in html and after.lead.story.title.split()[0] in html
    (event,) = drafted.editions.edition_events(NAME)
    assert (event.who, event.action) == ("anna", result.actions[0])


def test_lead_pin_order_and_subject(settings: Settings, drafted: Store) -> None:
    before = jobs.load_edition(drafted, NAME)
    third, fifth = before.more[2].story, before.more[4].story
    changes = [
        Change("lead", GALLERY),
        Change("pin", fifth.url),
        Change("pin", third.url),
        Change("subject", "  Friday:\r\nGallery Walk  "),
    ]
    after = editor.edit(settings, drafted, NAME, changes, "anna").edition

    assert after.lead is not None and after.lead.story.url == GALLERY
    assert after.lead.note == "lead chosen by an editor"
    assert urls(after.more[:2]) == [fifth.url, third.url]
    assert [p.note for p in after.more[:3]] == ["pinned by an editor"] * 2 + [""]
    assert TRUMP in urls(after.more)  # the old lead goes back among the others, by score
    assert GALLERY not in urls(after.more)
    assert after.subject == "Friday: Gallery Walk"  # one header line, whatever was typed
    assert jobs.render_edition(settings, drafted, NAME).subject == "Friday: Gallery Walk"

    # Moving a story pins the new order down to where it moved, so scores cannot undo it.
    fourth = after.more[3].story.url
    moved = editor.edit(settings, drafted, NAME, [Change("up", fourth)], "ben").edition
    assert urls(moved.more[:4]) == [*urls(after.more[:2]), fourth, after.more[2].story.url]
    down = editor.edit(settings, drafted, NAME, [Change("down", fourth)], "ben").edition
    assert urls(down.more[:4]) == urls(after.more[:4])

    # Undo: the ranking's own edition comes back.
    reset = editor.edit(settings, drafted, NAME, [Change("reset")], "ben").edition
    assert urls(reset.picks) == urls(before.picks) and reset.subject == before.subject
    assert not drafted.editions.load_overrides(NAME)


def test_changes_survive_a_later_collect_and_re_rank(settings: Settings, drafted: Store) -> None:
    editor.edit(
        settings, drafted, NAME, [Change("drop", TRUMP), Change("subject", "Our pick")], "anna"
    )
    jobs.collect(settings, drafted)
    again = jobs.draft(settings, drafted, DAY)
    assert TRUMP not in urls(again.picks) and again.subject == "Our pick"


def test_a_story_from_before_the_window_can_be_pinned_by_url(
    settings: Settings, drafted: Store
) -> None:
    old = "https://news.example.org/news/juneau-assembly-adopts-2026-budget/"
    # Without Most Read, where the site's chart would show this story of two days ago.
    settings = replace(settings, edition=replace(settings.edition, most_read_count=0))
    jobs.draft(settings, drafted, DAY)
    stored = drafted.stories.stories_by_url([old])
    assert old in stored and stored[old].published_at.date() < DAY - timedelta(days=1)
    with pytest.raises(EditError, match="no story of edition 2025-12-05 matches"):
        editor.edit(settings, drafted, NAME, [Change("pin", "Assembly adopts")], "anna")
    after = editor.edit(settings, drafted, NAME, [Change("pin", old)], "anna").edition
    assert after.more[0].story.url == old
    assert after.more[0].note == "pinned by an editor"
    view = editor.view(settings, drafted, NAME)
    assert old not in {s.url for s in view.others}  # placed, so not offered again
    # Unpinned, it leaves: it is not of this edition's window.
    unpinned = editor.edit(settings, drafted, NAME, [Change("unpin", old)], "anna").edition
    assert old not in urls(unpinned.picks)


def test_a_change_that_cannot_be_made_saves_none_of_them(
    settings: Settings, drafted: Store
) -> None:
    before = jobs.load_edition(drafted, NAME)
    with pytest.raises(EditError, match=r"'juneau' matches \d+ stories .* Give more"):
        editor.edit(settings, drafted, NAME, [Change("drop", TRUMP), Change("pin", "juneau")], "a")
    with pytest.raises(EditError, match="first in More already"):
        editor.edit(settings, drafted, NAME, [Change("up", before.more[0].story.url)], "a")
    with pytest.raises(EditError, match="not in More; pin it first"):
        editor.edit(settings, drafted, NAME, [Change("up", TRUMP)], "a")
    with pytest.raises(EditError, match="was not dropped"):
        editor.edit(settings, drafted, NAME, [Change("restore", TRUMP)], "a")
    with pytest.raises(EditError, match="under 150"):
        editor.edit(settings, drafted, NAME, [Change("subject", "x" * 151)], "a")
    assert urls(jobs.load_edition(drafted, NAME).picks) == urls(before.picks)
    assert not drafted.editions.load_overrides(NAME) and drafted.editions.edition_events(NAME) == []


def test_two_editors_saving_at_once_lose_neither_change(
    settings: Settings, drafted: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ben's change lands between Anna's reading the overrides and her saving them.
    real = drafted.editions.overrides_revision
    calls = 0

    def read_then_ben_saves(name: str) -> tuple[Overrides, int]:
        nonlocal calls
        calls += 1
        got = real(name)
        if calls == 1:
            editor.edit(settings, drafted, NAME, [Change("drop", TRUMP)], "ben")
        return got

    monkeypatch.setattr(drafted.editions, "overrides_revision", read_then_ben_saves)
    editor.edit(settings, drafted, NAME, [Change("drop", GALLERY)], "anna")
    assert drafted.editions.load_overrides(NAME).dropped == [TRUMP, GALLERY]
    assert not {TRUMP, GALLERY} & set(urls(jobs.load_edition(drafted, NAME).picks))
    assert [e.who for e in drafted.editions.edition_events(NAME)] == ["ben", "anna"]
    # A save from a stale revision is refused, not applied.
    assert not drafted.editions.save_overrides(NAME, Overrides(), 1, "carl", ["reset"])


def test_approval_keeps_the_edition_and_a_change_withdraws_it(
    settings: Settings, drafted: Store
) -> None:
    approved = editor.approve(settings, drafted, NAME, "chief")
    assert approved.status == "approved" == jobs.load_edition(drafted, NAME).status
    jobs.collect(settings, drafted)
    assert jobs.draft(settings, drafted, DAY).status == "approved"  # a collect keeps it

    result = editor.edit(settings, drafted, NAME, [Change("drop", GALLERY)], "anna")
    assert result.approval_withdrawn and result.edition.status == "draft"
    assert result.actions[-1] == "approval withdrawn by the change; approve it again"
    editor.approve(settings, drafted, NAME, "chief")
    editor.withdraw(drafted, NAME, "chief")
    assert jobs.load_edition(drafted, NAME).status == "draft"
    with pytest.raises(EditError, match="not approved; nothing to withdraw"):
        editor.withdraw(drafted, NAME, "chief")
    assert [(e.who, e.action) for e in drafted.editions.edition_events(NAME)] == [
        ("chief", "approved the edition"),
        ("anna", "dropped “Gallery Walk guide for Friday, Dec. 5”"),
        ("anna", "approval withdrawn by the change; approve it again"),
        ("chief", "approved the edition"),
        ("chief", "withdrew the approval"),
    ]


def test_a_broken_template_stops_the_approval_not_the_send(
    settings: Settings, drafted: Store, tmp_path: Path
) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    lead = templates / "partials" / "lead.mjml.j2"
    lead.write_text(lead.read_text() + "\n{{ edition.lead.story.title | no_such_filter }}\n")
    broken = replace(settings, templates_dir=templates)
    with pytest.raises(Exception, match="no_such_filter"):
        editor.approve(broken, drafted, NAME, "chief")
    assert jobs.load_edition(drafted, NAME).status == "draft"


def test_an_edition_with_a_send_can_no_longer_change(settings: Settings, drafted: Store) -> None:
    jobs.send(settings, drafted, NAME)
    with pytest.raises(EditError, match="being sent or was sent, so it can no longer change"):
        editor.edit(settings, drafted, NAME, [Change("drop", GALLERY)], "anna")
    with pytest.raises(EditError, match="can no longer change"):
        editor.approve(settings, drafted, NAME, "chief")
    assert editor.view(settings, drafted, NAME).has_send


def test_the_schema_the_migrations_make_is_the_one_the_code_uses(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from digest.store import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Column types differ only by our UTC wrapper around DateTime; tables, columns,
    # indexes and nullability must all agree.
    assert [d for d in diff if not (isinstance(d, list) and d[0][0] == "modify_type")] == []


def _digest(newsroom: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest.cli", *args, "--config", str(newsroom / "digest.toml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DIGEST_SECRET_KEY": "test-secret", "COLUMNS": "200"},
        cwd=ROOT,
        timeout=120,
    )


def test_digest_edit_and_approve_on_the_command_line(newsroom: Path) -> None:
    assert _digest(newsroom, "collect").returncode == 0
    shown = _digest(newsroom, "edit", NAME)
    assert shown.returncode == 0, shown.stderr
    assert "Trump to meet Putin" in shown.stdout and "Changes" not in shown.stdout

    edited = _digest(
        newsroom, "edit", NAME, "--drop", "trump-to-meet", "--pin", "Gallery Walk",
        "--subject", "Friday's news", "--by", "anna",
    )  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    out = edited.stdout
    assert "✓ dropped “Trump to meet Putin" in out and "✓ pinned “Gallery Walk" in out
    assert "Subject: Friday's news" in out and "pinned by an editor" in out
    assert "dropped by an editor" in out and TRUMP in out
    assert "anna: dropped" in out

    wrong = _digest(newsroom, "edit", NAME, "--pin", "juneau")
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: 'juneau' matches")
    assert wrong.stderr.count("\n") == 1  # one line

    approved = _digest(newsroom, "approve", NAME, "--by", "chief")
    assert approved.returncode == 0 and "Edition 2025-12-05 approved: Friday's news" in (
        approved.stdout
    )
    drafted_again = _digest(newsroom, "draft", "--date", NAME)
    assert "(approved)" in drafted_again.stdout
    assert _digest(newsroom, "approve", NAME, "--withdraw").returncode == 0
    assert "(draft)" in _digest(newsroom, "edit", NAME).stdout
    bad = _digest(newsroom, "edit", "2025-13-01")
    assert bad.returncode == 2 and "'2025-13-01' is not a date" in bad.stderr


def test_editors_work_on_today_s_edition_until_its_send_time_then_tomorrow_s(
    settings: Settings,
) -> None:
    from datetime import UTC, datetime

    # 06:00 in Juneau is 15:00 UTC in December.
    assert jobs.upcoming(settings, datetime(2025, 12, 5, 14, 59, tzinfo=UTC)) == DAY
    assert jobs.upcoming(settings, datetime(2025, 12, 5, 15, 0, tzinfo=UTC)) == date(2025, 12, 6)
    # 23:30 in Juneau is already the next day in UTC: still the 6th, the zone decides.
    assert jobs.upcoming(settings, datetime(2025, 12, 6, 8, 30, tzinfo=UTC)) == date(2025, 12, 6)


def test_a_database_from_before_the_editor_is_upgraded_with_its_editions(
    settings: Settings, db_url: str
) -> None:
    from alembic import command
    from alembic.config import Config

    from digest.store import MIGRATIONS

    store = Store.open(db_url)
    jobs.collect(settings, store)
    before = jobs.draft(settings, store, DAY)
    # Back to the schema before the editor (0002), as an older release left it.
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
    store.close()

    upgraded = Store.open(db_url)  # opening a store brings the schema up to date
    try:
        again = upgraded.editions.load_edition(NAME)
        assert again is not None and urls(again.picks) == urls(before.picks)
        assert all(p.note == "" for p in again.picks)
        assert (
            not upgraded.editions.load_overrides(NAME)
            and upgraded.editions.edition_events(NAME) == []
        )
        edited = editor.edit(settings, upgraded, NAME, [Change("drop", TRUMP)], "anna")
        assert TRUMP not in urls(edited.edition.picks)
    finally:
        upgraded.close()


def test_an_edition_with_no_stories_is_never_sent_nor_approved(
    settings: Settings, drafted: Store
) -> None:
    from digest.errors import SendError

    empty = jobs.draft(settings, drafted, date(2030, 1, 1))  # nothing collected for it
    assert empty.lead is None and empty.more == []
    with pytest.raises(SendError, match=r"edition 2030-01-01 has no stories.*Nothing was sent"):
        jobs.send(settings, drafted, "2030-01-01")
    assert drafted.sends.get_send("2030-01-01") is None
    assert not list(settings.delivery.outbox_dir.glob("2030-01-01/*.eml"))
    with pytest.raises(EditError, match="no stories, so there is nothing to approve"):
        editor.approve(settings, drafted, "2030-01-01", "chief")
