"""rank: lead, More in News (capped per section), Most Read from real page views."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from digest.collect import collect_all
from digest.config import EditionSettings, Settings
from digest.models import Story
from digest.rank import WEIGHTS, draft, edition_window, rank
from digest.store import Store

DAY = date(2025, 12, 5)
LEAD = "Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage"


def test_window_is_the_24_hours_before_send_time_in_the_newsroom_zone(settings: Settings) -> None:
    window = edition_window(DAY, "America/Juneau", settings.edition)
    # 06:00 in Juneau (UTC-9 in December) is 15:00 UTC.
    assert window.send_at == datetime(2025, 12, 5, 15, 0, tzinfo=UTC)
    assert window.start == datetime(2025, 12, 4, 15, 0, tzinfo=UTC)
    assert (window.first_day, window.last_day) == (date(2025, 12, 4), date(2025, 12, 5))


def test_sample_edition(settings: Settings, store: Store) -> None:
    collect_all(settings, store)
    edition = draft(store, settings, DAY)
    assert edition.lead is not None
    assert edition.lead.story.title == LEAD
    assert edition.subject == LEAD
    titles = [p.story.title for p in [edition.lead, *edition.more]]
    assert "Juneau Assembly adopts 2026 budget" not in titles  # published 2025-12-02
    assert len(edition.more) == settings.edition.more_count
    sections = [edition.lead.story.section] + [p.story.section for p in edition.more]
    assert max(sections.count(s) for s in set(sections)) <= settings.edition.max_per_section
    # Most Read is the site's chart (tracking-parameter rows merged in) without the
    # stories shown above: the budget story, out of the window, was read yesterday.
    assert [(p.story.title[:30], p.views) for p in edition.most_read] == [
        ("Skagway’s lone paramedic is su", 1800),
        ("Juneau Assembly adopts 2026 bu", 300),
    ]


def test_most_read_may_repeat_the_stories_above_when_set(settings: Settings, store: Store) -> None:
    collect_all(settings, store)
    edition = draft(
        store, replace(settings, edition=replace(settings.edition, most_read_repeats=True)), DAY
    )
    # The page-view order, whatever is shown above.
    assert [(p.story.title[:30], p.views) for p in edition.most_read] == [
        ("Gov. Dunleavy approves Alaska ", 3770),
        ("Where to cut your Christmas tr", 2890),
        (LEAD[:30], 2430),
        ("Skagway’s lone paramedic is su", 1800),
        ("State starts engineering for p", 1530),
    ]


def test_every_pick_keeps_its_score_breakdown(settings: Settings, store: Store) -> None:
    collect_all(settings, store)
    drafted = draft(store, settings, DAY)
    loaded = store.editions.load_edition(DAY.isoformat())
    assert loaded is not None
    assert [p.story.url for p in loaded.picks] == [p.story.url for p in drafted.picks]
    for pick in loaded.picks:
        parts = pick.breakdown
        assert set(parts) == {*WEIGHTS, "total"}
        assert abs(sum(WEIGHTS[k] * parts[k] for k in WEIGHTS) - parts["total"]) < 1e-3
        assert pick.score == parts["total"]
    assert [p.score for p in [loaded.lead, *loaded.more]] == sorted(
        (p.score for p in [loaded.lead, *loaded.more]), reverse=True
    )


def test_most_read_is_left_out_without_page_view_data(settings: Settings, store: Store) -> None:
    collect_all(settings, store, pageviews=[])
    edition = draft(store, settings, DAY)
    assert edition.lead is not None
    assert edition.most_read == []


def _story(n: int, section: str, hours_before: float, image: bool = True) -> Story:
    return Story(
        url=f"https://x.example.org/{n}",
        title=f"Story {n}",
        section=section,
        image_url="https://x.example.org/i.jpg" if image else "",
        published_at=datetime(2025, 12, 5, 15, tzinfo=UTC) - timedelta(hours=hours_before),
    )


def test_section_cap_and_image_preference() -> None:
    settings = EditionSettings(more_count=4, max_per_section=2)
    window = edition_window(DAY, "America/Juneau", settings)
    stories = [_story(i, "News", i) for i in range(1, 6)] + [_story(9, "Arts", 10)]
    edition = rank(stories, {}, window, settings)
    assert [p.story.section for p in [edition.lead, *edition.more]].count("News") == 2
    assert edition.more[-1].story.section == "Arts"
    # Same time, same placement: the one with a picture leads.
    plain, pictured = _story(1, "A", 1, image=False), _story(2, "B", 1)
    edition = rank([plain, pictured], {}, window, replace(settings, max_per_section=5))
    assert edition.lead is not None and edition.lead.story is pictured


def test_an_approved_edition_is_not_redrafted(settings: Settings, store: Store) -> None:
    from digest import jobs

    collect_all(settings, store)
    first = jobs.draft(settings, store, DAY)
    store.editions.set_edition_status(first.name, "approved")
    store.stories.upsert_stories(
        [
            replace(
                first.lead.story,
                id=None,
                url="https://n.example.org/new",  # type: ignore[union-attr]
                title="Breaking",
                prominence=1.0,
                published_at=first.send_at - timedelta(minutes=5),
            )
        ]
    )
    again = jobs.draft(settings, store, DAY)
    assert again.status == "approved"
    assert [p.story.url for p in again.picks] == [p.story.url for p in first.picks]


def test_overrides_beat_the_scores_but_keep_them() -> None:
    from digest.models import Overrides

    settings = EditionSettings(more_count=3, max_per_section=2)
    window = edition_window(DAY, "America/Juneau", settings)
    stories = [_story(i, "News", i) for i in range(1, 8)]
    plain = rank(stories, {}, window, settings)
    assert [p.story.title for p in [plain.lead, *plain.more]] == ["Story 1", "Story 2"]  # cap

    edits = Overrides(
        lead="https://x.example.org/5",
        pinned=["https://x.example.org/7", "https://x.example.org/gone", "https://x.example.org/6"],
        dropped=["https://x.example.org/1"],
        subject="Chosen",
    )
    edited = rank(stories, {}, window, settings, edits)
    assert edited.lead is not None and edited.lead.story.title == "Story 5"
    # Pinned stories open More in the editor's order, past the section cap; a pinned
    # story that is not a candidate is simply absent; then nothing more of News fits.
    assert [p.story.title for p in edited.more] == ["Story 7", "Story 6"]
    assert "Story 1" not in [p.story.title for p in edited.picks]
    assert edited.subject == "Chosen"
    by_score = {p.story.url: p.score for p in plain.picks}
    assert edited.lead.score < by_score["https://x.example.org/2"]  # the score is kept, honest
    assert [p.note for p in edited.picks] == [
        "lead chosen by an editor",
        "pinned by an editor",
        "pinned by an editor",
    ]

    # Dropping frees a slot, which the next story by score fills.
    arts = [*stories, _story(20, "Arts", 20)]
    refill = rank(arts, {}, window, settings, Overrides(dropped=["https://x.example.org/2"]))
    assert [p.story.title for p in refill.more] == ["Story 3", "Story 20"]
