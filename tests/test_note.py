"""The editors' note: set from the CLI and the editor page, audited, under the greeting
in both parts, and never a script, an unsafe link or a substitution token."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from lxml import html as lxml_html

from digest import editor, jobs, note
from digest.config import Settings
from digest.copies import preview_values
from digest.editor import Change
from digest.models import Recipient
from digest.note import NoteError, Part
from digest.send import letter_for
from digest.store import Store
from digest.tokens import TOKEN_SYNTAX, fill

DAY = date(2025, 12, 5)
NAME = DAY.isoformat()


@pytest.fixture
def drafted(settings: Settings, store: Store) -> Store:
    jobs.collect(settings, store)
    jobs.draft(settings, store, DAY)
    return store


def _note_html(html: str) -> lxml_html.HtmlElement:
    [part] = lxml_html.fromstring(html).xpath("//*[contains(@class, 'part-note')]")
    return part


def test_paragraphs_line_breaks_and_the_two_forms_of_link() -> None:
    text = note.clean(
        "Good morning.\r\nThe vote is [tonight](https://example.org/vote).\n\n\n\n"
        "Details: https://example.org/a?b=1.  \n",
        1000,
    )
    assert text == (
        "Good morning.\nThe vote is [tonight](https://example.org/vote).\n\n"
        "Details: https://example.org/a?b=1."
    )
    assert note.paragraphs(text) == [
        [
            Part("text", "Good morning."),
            Part("break"),
            Part("text", "The vote is "),
            Part("link", "tonight", "https://example.org/vote"),
            Part("text", "."),
        ],
        [
            Part("text", "Details: "),
            Part("link", "https://example.org/a?b=1", "https://example.org/a?b=1"),
            Part("text", "."),  # the full stop ends the sentence, not the address
        ],
    ]
    assert [note.as_text(p) for p in note.paragraphs(text)] == [
        "Good morning.\nThe vote is tonight (https://example.org/vote).",
        "Details: https://example.org/a?b=1.",
    ]


def test_a_javascript_link_is_refused_and_never_rendered_as_a_link() -> None:
    with pytest.raises(NoteError, match=r"not an http\(s\) address"):
        note.clean("Click [here](javascript:alert(1))", 1000)
    with pytest.raises(NoteError, match=r"not an http\(s\) address"):
        note.clean("[x](data:text/html,<script>alert(1)</script>)", 1000)
    # Kept from before (or written straight into the store): text, not a link.
    parts = note.paragraphs("[here](javascript:alert(1)) and JavaScript:alert(2)")
    assert all(p.kind == "text" for p in parts[0])


def test_control_and_bidi_override_characters_are_taken_out() -> None:
    # U+202E would show "https://evil.example/moc.elpmaxe" reversed, as another address.
    text = note.clean("see\u202e https://evil.example/\u202c now\x00\x1b[31m", 1000)
    assert text == "see https://evil.example/ now[31m"


def test_a_note_over_the_limit_is_refused_with_the_setting_named() -> None:
    with pytest.raises(
        NoteError, match=r"1,001 characters; keep it to 1,000 \(\[limits\] note_max_chars\)"
    ):
        note.clean("x" * 1001, 1000)
    assert note.clean("x" * 1000, 1000) == "x" * 1000


def test_an_editor_sets_the_note_and_it_is_recorded(settings: Settings, drafted: Store) -> None:
    result = editor.edit(
        settings,
        drafted,
        NAME,
        [Change("note", "Snow closes schools today.\n\nStay warm.")],
        "anna",
    )
    assert result.actions == ["set the note to readers: “Snow closes schools today. Stay warm.”"]
    assert result.edition.note == "Snow closes schools today.\n\nStay warm."
    assert jobs.load_edition(drafted, NAME).note == result.edition.note
    assert drafted.editions.load_overrides(NAME).note == result.edition.note
    events = drafted.editions.edition_events(NAME)
    assert [(e.who, e.action) for e in events][-1] == (
        "anna",
        "set the note to readers: “Snow closes schools today. Stay warm.”",
    )
    rendered = jobs.render_edition(settings, drafted, NAME)
    paragraphs = _note_html(rendered.html).xpath(".//p")
    assert [p.text_content() for p in paragraphs] == ["Snow closes schools today.", "Stay warm."]
    assert all(p.get("dir") == "auto" for p in paragraphs)
    greeting = rendered.text.index("%%greeting_text")
    assert (
        rendered.text.index("FROM THE EDITORS\n\nSnow closes schools today.\n\nStay warm.")
        > greeting
    )
    # A later collect ranks again: the note stays.
    jobs.draft(settings, drafted, DAY)
    assert jobs.load_edition(drafted, NAME).note == result.edition.note
    # Cleared, it is gone from the email and the record says so.
    cleared = editor.edit(settings, drafted, NAME, [Change("note", "  ")], "ben")
    assert cleared.actions == ["removed the note to readers"] and cleared.edition.note == ""
    assert "part-note" not in jobs.render_edition(settings, drafted, NAME).html


def test_hostile_notes(settings: Settings, drafted: Store) -> None:
    hostile = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)>\n"
        "Hi %%greeting%% %%unsubscribe_url%% %%name%%, "
        "[see](https://evil.example/?u=%%unsubscribe_url%%)\n\n"
        "שלום לקוראים, [הצבעה](https://example.org/הצבעה) مرحبا"
    )
    edited = editor.edit(settings, drafted, NAME, [Change("note", hostile)], "mallory")
    rendered = jobs.render_edition(settings, drafted, NAME)
    part = _note_html(rendered.html)
    # No script, no handler, no picture: the words are shown as words.
    assert not part.xpath(".//script | .//img | .//@onerror")
    assert "<script>alert(1)</script>" in part.text_content()
    # Links: http(s) only, and no token syntax in them.
    hrefs = part.xpath(".//a/@href")
    assert hrefs == [
        "https://evil.example/?u=%25%25unsubscribe_url%25%25",
        "https://example.org/%D7%94%D7%A6%D7%91%D7%A2%D7%94",  # as the HTML writes it
    ]
    # No token in the copy but the template's own; filled for a reader, the note keeps
    # what it said and gives nobody's name or link away.
    tokens = set(TOKEN_SYNTAX.findall(rendered.html)) | set(TOKEN_SYNTAX.findall(rendered.text))
    assert all(rendered.token_key in t for t in tokens)
    values = letter_for(settings, rendered).substitutions(
        Recipient("reader@example.org", "Zed Q"), "https://u.example/x"
    )
    filled = fill(rendered.html, values)
    assert filled.count("Zed Q") == 1  # the greeting, and nowhere in the note
    part = _note_html(filled)
    assert "%\u2060%greeting%\u2060%" in part.text_content()
    assert "u.example" not in lxml_html.tostring(part, encoding="unicode")
    # Right to left: the words as written, each paragraph in its own direction.
    assert "שלום לקוראים" in part.text_content() and "مرحبا" in part.text_content()
    assert edited.edition.note.endswith("مرحبا")
    assert preview_values(settings, rendered)  # a preview fills it as it is


def test_a_megabyte_note_is_refused_at_once_and_nothing_is_saved(
    settings: Settings, drafted: Store
) -> None:
    started = time.monotonic()
    with pytest.raises(NoteError, match=r"1,048,576 characters; keep it to 1,000"):
        editor.edit(settings, drafted, NAME, [Change("note", "x" * 1024 * 1024)], "anna")
    assert time.monotonic() - started < 1
    assert drafted.editions.load_overrides(NAME).note == ""
    assert drafted.editions.edition_events(NAME) == []
    # A setting says how long: a newsroom that wants more says so.
    roomy = replace(settings, limits=replace(settings.limits, note_max_chars=2000))
    editor.edit(roomy, drafted, NAME, [Change("note", "y" * 1500)], "anna")
    assert len(jobs.load_edition(drafted, NAME).note) == 1500


def test_digest_edit_note_on_the_command_line(newsroom: Path) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digest.cli", *args],
            cwd=newsroom,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("collect").returncode == 0
    done = run("edit", NAME, "--note", "Vote [tonight](https://example.org/vote).", "--by", "anna")
    assert done.returncode == 0, done.stderr
    assert "✓ set the note to readers: “Vote [tonight](https://example.org/vote).”" in done.stdout
    assert "Note: Vote [tonight](https://example.org/vote)." in done.stdout
    (newsroom / "note.txt").write_text("First.\n\nSecond.", encoding="utf-8")
    from_file = run("edit", NAME, "--note-file", "note.txt")
    assert from_file.returncode == 0 and "Note: First. (more)" in from_file.stdout
    from_stdin = run("edit", NAME, "--note-file", "-", stdin="From standard input.")
    assert "Note: From standard input." in from_stdin.stdout
    refused = run("edit", NAME, "--note", "[x](javascript:alert(1))")
    assert refused.returncode != 0 and refused.stderr.startswith("error: the note's link")
    assert "Traceback" not in refused.stderr
    missing = run("edit", NAME, "--note-file", "nowhere.txt")
    assert missing.returncode == 2 and missing.stderr.startswith("error: --note-file nowhere.txt")
    cleared = run("edit", NAME, "--note", "")
    assert "✓ removed the note to readers" in cleared.stdout and "Note:" not in cleared.stdout


def test_the_note_heading_is_in_the_newsroom_language(settings: Settings, drafted: Store) -> None:
    from digest import render

    spanish = replace(settings, newsroom=replace(settings.newsroom, locale="es_US"))
    edition = replace(jobs.load_edition(drafted, NAME), note="Hoy cierran las escuelas.")
    rendered = render.render(spanish, edition)
    assert "De la redacción" in _note_html(rendered.html).text_content()
    assert "DE LA REDACCIÓN\n\nHoy cierran las escuelas." in rendered.text
    assert "From the editors" not in rendered.html + rendered.text.upper().title()
