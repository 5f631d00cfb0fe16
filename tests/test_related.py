"""Related stories in the product: the demo edition's "Related" list, the editors'
overrides, `digest related`, the [related] settings. (The engine's quality on real text
is tests/test_related_eval.py.)"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from test_cli import digest
from test_related_eval import articles, as_stories

from digest import config, editor, jobs, related, render
from digest.config import Settings
from digest.editor import Change
from digest.errors import ConfigError
from digest.store import Store

DAY = date(2025, 12, 5)
NAME = DAY.isoformat()
NEWS = "https://news.example.org/news/"
TRUMP = f"{NEWS}trump-to-meet-putin-at-joint-base-elmendorf-richardson-in-anchorage/"
SUMMIT = {
    f"{NEWS}why-alaska-the-history-behind-a-summit-at-joint-base-elmendorf-richardson/",
    f"{NEWS}white-house-names-anchorage-as-site-of-trump-putin-meeting/",
    f"{NEWS}anchorage-braces-for-summit-road-closures-and-security-zones-near-jber/",
    f"{NEWS}alaska-delegation-reacts-to-trump-putin-summit-plans/",
}
SWIM = f"{NEWS}juneau-high-school-swimmers-win-regional-meet/"


@pytest.fixture
def drafted(settings: Settings, store: Store) -> Store:
    jobs.collect(settings, store)
    jobs.draft(settings, store, DAY)
    return store


def test_the_demo_lead_gets_its_summit_stories_from_the_archive(
    settings: Settings, drafted: Store
) -> None:
    edition = jobs.load_edition(drafted, NAME)
    assert edition.lead is not None and edition.lead.story.url == TRUMP
    listed = [p.story.url for p in edition.related]
    assert len(listed) == 3 and set(listed) <= SUMMIT
    assert all(p.under == TRUMP and p.slot == "related" for p in edition.related)
    assert [p.score for p in edition.related] == sorted(
        (p.score for p in edition.related), reverse=True
    )
    assert all(p.score >= settings.related.threshold for p in edition.related)
    # Archive stories: published before the edition's window, collected all the same.
    assert all(p.story.published_at < edition.window_start for p in edition.related)
    shown = {p.story.url for p in [edition.lead, *edition.more]}
    assert not shown & set(listed)


def test_the_related_list_is_in_both_parts_with_the_day_it_ran(
    settings: Settings, drafted: Store
) -> None:
    edition = jobs.load_edition(drafted, NAME)
    out = render.render(settings, edition)
    first = edition.related[0].story
    ran = first.published_at.astimezone(settings.newsroom.zone)
    day = f"{ran:%b} {ran.day}"  # "Nov 30", as Babel writes it in en_US
    assert "Related" in out.html and first.title in out.html and day in out.html
    text = out.text
    assert "Related:" in text and day in text
    assert text.index("Related:") < text.index("MORE IN NEWS")
    spanish = replace(settings, newsroom=replace(settings.newsroom, locale="es_US"))
    assert "Relacionadas" in render.render(spanish, edition).html


def test_a_lead_with_nothing_alike_gets_no_list(settings: Settings, drafted: Store) -> None:
    """The threshold: a story is never listed just to fill the slot."""
    strict = replace(settings, related=replace(settings.related, threshold=0.99))
    edition = jobs.draft(strict, drafted, DAY)
    assert edition.lead is not None and edition.related == []
    assert "Related" not in render.render(strict, edition).text


def test_under_more_lists_no_story_twice(settings: Settings, drafted: Store) -> None:
    wide = replace(settings, related=replace(settings.related, under_more=True))
    edition = jobs.draft(wide, drafted, DAY)
    listed = [p.story.url for p in edition.related]
    shown = [p.story.url for p in [edition.lead, *edition.more]] if edition.lead else []
    assert len(listed) == len(set(listed)) and not set(listed) & set(shown)
    under = {p.under for p in edition.related}
    assert len(under) > 1  # the More stories have their archive stories too
    assert f"{NEWS}state-ferry-budget-would-fund-cascade-point-design-work/" in listed


def test_editors_add_and_drop_related_stories(settings: Settings, drafted: Store) -> None:
    first = jobs.load_edition(drafted, NAME).related[0].story.url
    result = editor.edit(
        settings, drafted, NAME, [Change("unrelate", first), Change("relate", SWIM)], "anna"
    )
    listed = [p.story.url for p in result.edition.related]
    assert listed[0] == SWIM and result.edition.related[0].note == "added by an editor"
    assert first not in listed and len(listed) == 3
    assert result.actions[0].startswith("dropped “") and "added “" in result.actions[1]
    # Kept as overrides, on the record, and through a later draft.
    overrides = drafted.editions.load_overrides(NAME)
    assert overrides.related_added == [SWIM] and overrides.related_dropped == [first]
    assert [e.action for e in drafted.editions.edition_events(NAME)] == result.actions
    again = jobs.draft(settings, drafted, DAY)
    assert [p.story.url for p in again.related] == listed
    # Relating a dropped story brings it back; reset undoes it all.
    editor.edit(settings, drafted, NAME, [Change("relate", first)], "anna")
    assert drafted.editions.load_overrides(NAME).related_dropped == []
    editor.edit(settings, drafted, NAME, [Change("reset")], "anna")
    reset = jobs.load_edition(drafted, NAME)
    assert SWIM not in [p.story.url for p in reset.related]


def test_same_related_on_sqlite_and_postgresql(
    settings: Settings, tmp_path: Path, pg_url: str
) -> None:
    found = []
    for url in (f"sqlite:///{tmp_path / 'one.db'}", pg_url):
        store = Store.open(url)
        try:
            jobs.collect(settings, store)
            edition = jobs.draft(settings, store, DAY)
            found.append([(p.story.url, p.score, p.under) for p in edition.related])
        finally:
            store.close()
    assert found[0] and found[0] == found[1]


def test_digest_related_on_the_sample_newsroom(newsroom: Path) -> None:
    assert digest("collect", cwd=newsroom).returncode == 0
    table = digest("related", TRUMP, cwd=newsroom)
    assert table.returncode == 0, table.stderr
    assert "Related to: Trump to meet Putin" in table.stdout
    answer = digest("related", TRUMP + "?utm_source=x", "--json", "--limit", "4", cwd=newsroom)
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)
    assert found["story"]["url"] == TRUMP
    assert {r["url"] for r in found["related"]} == SUMMIT
    assert all(0 < r["score"] <= 1 for r in found["related"])
    missing = digest("related", f"{NEWS}no-such-story/", cwd=newsroom)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    assert "no such story in the store" in missing.stderr


def test_digest_related_on_the_labelled_set(newsroom: Path) -> None:
    settings = config.load(newsroom / "digest.toml", env={})
    store = Store.open(settings.database_url)
    try:
        store.stories.upsert_stories(as_stories(articles(), with_body=True))
    finally:
        store.close()
    galaxy = next(a for a in articles() if a.label == "samsung.galaxy.s5")
    answer = digest("related", galaxy.url, "--json", cwd=newsroom)
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)["related"]
    labels = {a.url: a.label for a in articles()}
    assert len(found) == 3 and {labels[r["url"]] for r in found} == {"samsung.galaxy.s5"}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("threshold = 2", r"\[related\] threshold must be more than 0 and at most 1"),
        ("count = 11", r"\[related\] count must be 0 to 10"),
        ('days = "30"', r"\[related\] days must be a whole number"),
        ("under_more = 1", r"\[related\] under_more must be true or false"),
        ("limit = 3", r"\[related\] limit is not a setting"),
    ],
)
def test_related_settings_are_checked(newsroom: Path, setting: str, message: str) -> None:
    path = newsroom / "digest.toml"
    key = setting.split(" = ")[0]
    text = path.read_text()
    if re.search(rf"^{key} = ", text, flags=re.MULTILINE):
        text = re.sub(rf"^{key} = [^#\n]*", f"{setting} ", text, flags=re.MULTILINE)
    else:
        text = text.replace("[related]", f"[related]\n{setting}", 1)
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load(path, env={})


def test_index_refresh_follows_a_story_collected_again(settings: Settings, store: Store) -> None:
    """A story collected again with its text changed is indexed again; one collected
    again as it was is left alone."""
    jobs.collect(settings, store)
    start, end = related.archive_window(jobs.draft(settings, store, DAY), settings.related)
    assert related.refresh(store, start, end) == 0
    jobs.collect(settings, store)
    assert related.refresh(store, start, end) == 0
    feed = Path(settings.sources.feeds[0])  # the newsroom's copy, in a temporary folder
    text = feed.read_text()
    title = text.split("<item>")[1].split("<title>")[1].split("</title>")[0]
    feed.write_text(text.replace(title, title + " (corrected)", 1))
    jobs.collect(settings, store)
    assert related.refresh(store, start, end) == 1


def test_a_story_indexed_again_counts_once_on_its_day(store: Store) -> None:
    """The day counts behind the document frequencies: a story indexed again (its text
    or its date changed) is counted once, on the day it is now published."""
    first, second = as_stories(articles()[:2], with_body=False)
    store.stories.upsert_stories([first, second])
    stored = store.stories.stories_by_url([first.url, second.url])
    story = stored[first.url]
    term = related.posted(related.terms(story))[0]
    day = story.published_at.replace(hour=0, minute=0, second=0)
    window = (day - timedelta(days=3), day + timedelta(days=3))
    for _ in range(3):
        related.index(store, [story, stored[second.url]])
    assert store.related.count_indexed(*window) == 2
    assert store.related.document_frequencies([term], *window)[term] == 1
    moved = replace(story, published_at=story.published_at - timedelta(days=10))
    related.index(store, [moved])
    assert store.related.count_indexed(*window) == 1
    assert term not in store.related.document_frequencies([term], *window)
    earlier = (window[0] - timedelta(days=10), window[1] - timedelta(days=10))
    assert store.related.document_frequencies([term], *earlier) == {term: 1}
