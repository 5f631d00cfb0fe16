"""Section preferences: one copy of the edition per preference, rendered once and kept.

A reader who chose sections gets the lead, the "More" stories of those sections and
Most Read; one with none (or whose sections have nothing today) gets the whole
edition. Batches hold readers of one preference, so each request or message carries
the right copy. The copies are stored: a resumed send mails what already went out,
and a send whose copies are rendered does not load the renderer at all.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from fakes.newsroom import SECRET, copy_newsroom, with_delivery
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid

from digest import config, copies, jobs, rank
from digest.config import Settings
from digest.models import Edition, Pick, Story

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2025, 12, 5)
EDITION = DAY.isoformat()
LEAD = "Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage"
ENVIRONMENT = "Author calls for climate storytelling in Juneau talk"
ARTS = "Gallery Walk guide for Friday, Dec. 5"
COMMUNITY = "CBJ seeks input on uses for marine passenger fees"
NEWS = "Planned fiber-optic cable will add backup"
MOST_READ_ONLY = "Skagway’s lone paramedic is suing the city"


def _story(title: str, section: str) -> Story:
    return Story(
        url=f"https://news.example.org/{title.lower()}",
        title=title,
        published_at=datetime(2025, 12, 5, tzinfo=UTC),
        section=section,
    )


def _edition(*sections: str) -> Edition:
    when = datetime(2025, 12, 5, 14, tzinfo=UTC)
    return Edition(
        name=EDITION,
        send_at=when,
        window_start=when,
        window_end=when,
        subject="s",
        preheader="",
        lead=Pick(_story("Lead", "Politics"), "lead", 1, 1.0),
        more=[Pick(_story(f"S{i}", s), "more", i, 0.5) for i, s in enumerate(sections, 1)],
    )


def test_variant_key_is_the_chosen_sections_the_edition_has() -> None:
    edition = _edition("News", "Arts", "News", "Community")
    assert rank.variant_key(edition, "") == ""
    assert rank.variant_key(edition, "Arts") == "arts"
    # Case and order do not matter; a section with nothing today is no choice.
    assert rank.variant_key(edition, "sports;NEWS;arts") == "arts;news"
    assert rank.variant_key(edition, "Sports") == ""  # nothing of theirs: the whole edition
    assert rank.variant_key(edition, "arts;community;news") == ""  # all of it anyway


def test_a_variant_keeps_the_lead_and_most_read_and_only_the_chosen_more() -> None:
    edition = _edition("News", "Arts", "News")
    edition.most_read = [Pick(_story("Popular", "Arts"), "most_read", 1, 0.4)]
    arts = rank.variant(edition, rank.variant_key(edition, "arts"))
    assert arts.lead == edition.lead and arts.most_read == edition.most_read
    assert [(p.story.title, p.position) for p in arts.more] == [("S2", 1)]
    assert rank.variant(edition, "") is edition


@pytest.fixture
def run_settings(settings: Settings, db_url: str) -> Settings:
    return replace(settings, database_url=db_url)


def _messages(folder: Path) -> dict[str, EmailMessage]:
    messages = {}
    for path in sorted(folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        messages[message["To"].addresses[0].addr_spec] = message  # type: ignore[index]
    return messages


def _html(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def _text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_each_reader_gets_the_copy_for_their_sections(run_settings: Settings) -> None:
    store = jobs.open_store(run_settings)
    summary = jobs.run(run_settings, store, DAY)
    assert summary.send.state == "done" and summary.outbox is not None
    mail = _messages(summary.outbox)
    assert len(mail) == 9

    carlos = mail["carlos.mendes@example.org"]  # Environment
    for part, lead in ((_html(carlos), LEAD), (_text(carlos), LEAD.upper())):
        assert lead in part and ENVIRONMENT in part and MOST_READ_ONLY in part
        assert ARTS not in part and COMMUNITY not in part and NEWS not in part

    erin = _html(mail["erin.walsh@example.com"])  # News;Business: no Business today
    assert NEWS in erin and ENVIRONMENT not in erin and ARTS not in erin

    for everything in ("ben.tanaka@example.org", "dana.kim@example.com"):  # no preference
        html = _html(mail[everything])
        assert all(title in html for title in (LEAD, ENVIRONMENT, ARTS, COMMUNITY, NEWS))

    # One copy per distinct preference, rendered once and kept: the whole edition,
    # and arts;community, news, community, environment, environment;politics,
    # news;politics.
    keys = {rank.variant_key(summary.edition, s) for s in store.subscribers.deliverable_sections()}
    assert len(keys | {""}) == 7
    for key in keys:
        stored = store.editions.load_render(EDITION, key)
        assert stored is not None
        assert f"%%unsubscribe_url-{stored[1].token_key}%%" in stored[1].html
    store.close()


def test_dry_run_counts_the_copies_and_batches_a_send_would_make(run_settings: Settings) -> None:
    settings = with_delivery(run_settings, batch_size=2)
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    dry = jobs.dry_run(settings, store, EDITION)
    assert (dry.recipients, dry.batches, dry.copies) == (9, 8, 7)
    assert store.sends.get_send(EDITION) is None
    sent = jobs.send(settings, store, EDITION)
    assert (sent.recipients, sent.batches) == (dry.recipients, dry.batches)
    store.close()


def _templates(settings: Settings, folder: Path) -> Settings:
    shutil.copytree(settings.templates_dir, folder)
    return replace(settings, templates_dir=folder)


def _mark_footer(folder: Path, mark: str) -> None:
    for name in ("digest.txt.j2", "partials/footer.mjml.j2"):
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8") + f"\n{mark}\n", encoding="utf-8")


def test_a_resumed_send_mails_the_copies_that_already_went_out(
    run_settings: Settings, tmp_path: Path
) -> None:
    settings = with_delivery(_templates(run_settings, tmp_path / "templates"), batch_size=2)
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    first = jobs.send(settings, store, EDITION, limit=3)
    assert first.state == "paused" and 0 < first.sent < 9
    # Someone edits the templates while the send is paused.
    _mark_footer(tmp_path / "templates", "CHANGED-AFTER-THE-SEND-BEGAN")
    finished = jobs.send(settings, store, EDITION, resume=True)
    assert (finished.state, finished.sent) == ("done", 9)
    mail = _messages(settings.delivery.outbox_dir / EDITION)
    assert len(mail) == 9
    assert not any("CHANGED-AFTER-THE-SEND-BEGAN" in _text(m) for m in mail.values())
    store.close()


def test_a_template_change_before_the_send_is_rendered_anew(
    run_settings: Settings, tmp_path: Path
) -> None:
    settings = _templates(run_settings, tmp_path / "templates")
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    _mark_footer(tmp_path / "templates", "CHANGED-BEFORE-THE-SEND")
    assert "CHANGED-BEFORE-THE-SEND" in jobs.render_edition(settings, store, EDITION).text
    jobs.send(settings, store, EDITION)
    mail = _messages(settings.delivery.outbox_dir / EDITION)
    assert len(mail) == 9
    assert all("CHANGED-BEFORE-THE-SEND" in _text(m) for m in mail.values())
    store.close()


def test_a_web_page_template_change_leaves_the_email_copies_as_they_are(
    run_settings: Settings, tmp_path: Path
) -> None:
    settings = _templates(run_settings, tmp_path / "templates")
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    edition = jobs.draft(settings, store, DAY)
    before = copies.render_fingerprint(settings, edition)
    page = tmp_path / "templates" / "web" / "editor.html.j2"
    page.write_text(page.read_text() + "<!-- a new button -->")
    assert copies.render_fingerprint(settings, edition) == before
    _mark_footer(tmp_path / "templates", "AN EMAIL CHANGE")
    assert copies.render_fingerprint(settings, edition) != before
    store.close()


def test_sendgrid_requests_carry_one_copy_each(tmp_path: Path) -> None:
    settings = config.load(
        copy_newsroom(tmp_path),
        env={"DIGEST_SECRET_KEY": SECRET, "SENDGRID_API_KEY": DEFAULT_KEY},
    )
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    with FakeSendGrid(keep_bodies=True) as fake:
        settings = replace(settings, env={**settings.env, "SENDGRID_API_HOST": fake.url})
        result = jobs.send(settings, store, EDITION, backend="sendgrid")
    store.close()
    assert (result.state, result.sent, result.batches) == ("done", 9, 7)
    assert len(fake.bodies) == 7
    html_of: dict[str, str] = {}
    for body in fake.bodies:
        html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
        for personalization in body["personalizations"]:
            html_of[personalization["to"][0]["email"]] = html
    assert len(html_of) == 9
    assert ENVIRONMENT in html_of["carlos.mendes@example.org"]
    assert ARTS not in html_of["carlos.mendes@example.org"]
    assert ARTS in html_of["renee.obrien@example.com"]  # Arts;Community
    assert ENVIRONMENT not in html_of["renee.obrien@example.com"]
    assert all(t in html_of["ben.tanaka@example.org"] for t in (ENVIRONMENT, ARTS, NEWS))


def test_a_send_of_rendered_copies_does_not_load_the_renderer(tmp_path: Path) -> None:
    """The render stack (lxml, premailer, mjml) is 14 MB of a send's peak memory."""
    config_path = copy_newsroom(tmp_path)
    env = {**os.environ, "DIGEST_SECRET_KEY": SECRET}
    settings = config.load(config_path, env=env)
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    store.close()
    script = (
        "import sys\n"
        "from digest.cli import app\n"
        "try:\n"
        f"    app(['send', '{EDITION}', '-c', sys.argv[1]])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(m for m in ('lxml', 'premailer', 'mjml') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(config_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert len(list((settings.delivery.outbox_dir / EDITION).glob("*.eml"))) == 9
