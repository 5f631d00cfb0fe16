"""render's caches: templates compiled once per template set and compiled again when a
file changes; premailer's work on the style block kept; pictures resized once. Each
gives the very output the uncached path gives."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from mjml import mjml2html
from premailer import Premailer

from digest import media, render
from digest.collect import collect_all
from digest.config import Settings
from digest.locale import language
from digest.models import Edition
from digest.rank import draft
from digest.store import Store

DAY = date(2025, 12, 5)


@pytest.fixture
def sample_edition(settings: Settings, store: Store) -> Edition:
    collect_all(settings, store)
    return draft(store, settings, DAY)


@pytest.fixture
def own_templates(settings: Settings, tmp_path: Path) -> Settings:
    folder = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, folder)
    return replace(settings, templates_dir=folder)


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_editing_a_template_changes_the_next_render(
    own_templates: Settings, sample_edition: Edition
) -> None:
    folder = own_templates.templates_dir
    first = render.render(own_templates, sample_edition)
    footer = folder / "partials" / "footer.mjml.j2"
    original = footer.read_text(encoding="utf-8")
    # Included partials and the text template alike; no waiting for the clock to tick,
    # and two edits in a row (the same modification time, often) each show.
    for mark in ("EDITED-ONCE", "EDITED-TWICE"):
        footer.write_text(original + f"\n<mj-raw><p>{mark}</p></mj-raw>\n", encoding="utf-8")
        _append(folder / "digest.txt.j2", mark)
        edited = render.render(own_templates, sample_edition)
        assert mark in edited.html and mark in edited.text
    footer.write_text(original, encoding="utf-8")
    again = render.render(own_templates, sample_edition)
    assert "EDITED" not in again.html and "EDITED" not in first.html


def test_a_template_set_is_compiled_once(own_templates: Settings, sample_edition: Edition) -> None:
    words = language(own_templates.newsroom.locale, own_templates.templates_dir)
    env = render._environment(own_templates.templates_dir, True, words)
    render.render(own_templates, sample_edition)
    compiled = env.get_template("digest.mjml.j2")
    render.render(own_templates, sample_edition)
    assert env.get_template("digest.mjml.j2") is compiled
    assert render._environment(own_templates.templates_dir, True, words) is env
    # Another template set has its own environment.
    other = replace(own_templates, templates_dir=own_templates.templates_dir.parent / "other")
    shutil.copytree(own_templates.templates_dir, other.templates_dir)
    assert render._environment(other.templates_dir, True, words) is not env
    _append(own_templates.templates_dir / "digest.mjml.j2", "<!-- changed -->")
    assert env.get_template("digest.mjml.j2") is not compiled


def test_the_kept_style_rules_inline_exactly_as_premailer_does(
    settings: Settings, sample_edition: Edition, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "new_key", lambda: "0123456789abcdef")
    out = render.render(settings, sample_edition)
    # The same MJML through premailer itself, nothing kept, the same settings.
    captured: list[str] = []
    real_mjml2html = render.mjml2html

    def capture(source: str, **options: object) -> str:
        captured.append(real_mjml2html(source, **options))  # type: ignore[arg-type]
        return captured[-1]

    monkeypatch.setattr(render, "mjml2html", capture)
    render._STYLE_RULES.clear()
    again = render.render(settings, sample_edition)
    assert again.html == out.html  # kept rules, first and second time alike
    plain = Premailer(captured[0], **render.INLINER_OPTIONS).transform()
    assert out.html.removeprefix("<!doctype html>\n") == plain.removeprefix("<!doctype html>\n")
    assert "@media" in out.html and "!important" in out.html


def test_floated_pictures_still_get_align_for_outlook() -> None:
    source = (
        "<mjml><mj-head><mj-style>.right img { float: right; }</mj-style></mj-head><mj-body>"
        '<mj-section><mj-column><mj-image css-class="right" src="https://example.com/a.png" />'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    html = render._Inliner(
        mjml2html(source), allow_network=False, keep_style_tags=True,
        align_floating_images="float" in mjml2html(source),
    ).transform()  # fmt: skip
    assert 'align="right"' in html


def test_a_picture_is_resized_once_and_again_when_its_file_changes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    picture = tmp_path / "photo.png"
    Image.new("RGB", (800, 400), "red").save(picture)
    calls: list[int] = []
    real = media.email_sized

    def counted(data: bytes, width: int) -> tuple[bytes, str] | None:
        calls.append(width)
        return real(data, width)

    monkeypatch.setattr(media, "email_sized", counted)
    url = picture.as_uri()
    first = media.Publisher(settings).web_address(url, media.THUMB_WIDTH)
    assert media.Publisher(settings).web_address(url, media.THUMB_WIDTH) == first
    assert calls == [media.THUMB_WIDTH]
    # Its published copy deleted: published again.
    name = first.rsplit("/", 1)[1]
    (media.media_dir(settings) / name).unlink()
    assert media.Publisher(settings).web_address(url, media.THUMB_WIDTH) == first
    assert (media.media_dir(settings) / name).exists() and len(calls) == 2
    # A new picture in the same file: a new copy.
    Image.new("RGB", (900, 300), "blue").save(picture)
    assert media.Publisher(settings).web_address(url, media.THUMB_WIDTH) != first
    assert len(calls) == 3
