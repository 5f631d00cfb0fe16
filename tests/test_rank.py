"""rank: lead, More in News (capped per section), Most Read from real page views."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from digest import config
from digest.cli.edition_view import parts_in_words
from digest.collect import collect_all
from digest.config import EditionSettings, Settings
from digest.errors import ConfigError
from digest.models import Overrides, Story
from digest.rank import WEIGHTS, DigestClicks, candidates, draft, edition_window, rank, rank_with
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


def test_every_candidate_left_out_says_why() -> None:
    from digest.models import Overrides

    settings = EditionSettings(more_count=2, max_per_section=2)
    window = edition_window(DAY, "America/Juneau", settings)
    stories = [_story(i, "News", i) for i in range(1, 5)] + [
        _story(i, "Arts", i + 0.5) for i in range(5, 9)
    ]
    edits = Overrides(dropped=["https://x.example.org/6"])
    edition = rank(stories, {}, window, settings, edits, led={"https://x.example.org/7": "x"})
    placed = [p.story.title for p in [edition.lead, *edition.more]]
    assert placed == ["Story 1", "Story 2", "Story 5"]
    why = {o.story.title: (o.reason, o.why) for o in edition.left_out}
    # Every candidate is placed or left out, never both, never neither.
    assert set(why) | set(placed) == {s.title for s in stories}
    assert not set(why) & set(placed)
    assert why["Story 6"] == ("dropped", "dropped by an editor")
    assert why["Story 7"][0] == "led_recently" and "led the edition of x" in why["Story 7"][1]
    # News had two stories above when Story 3 and 4 came up; More was full after
    # Story 5, so Story 8 is under the cut, its score against the last More took.
    assert why["Story 3"][0] == why["Story 4"][0] == "section_cap"
    cut = edition.more[-1].score
    for title in ("Story 8",):
        reason, words = why[title]
        out = next(o for o in edition.left_out if o.story.title == title)
        assert reason == "under_cut"
        assert (
            words
            == f"under the cut: score {out.score:.3f}, the last story in More scored {cut:.3f}"
        )
        assert out.score <= cut and out.breakdown["total"] == out.score
    # In score order, as an editor reads down the list.
    scores = [o.score for o in edition.left_out]
    assert scores == sorted(scores, reverse=True)


def test_the_per_section_cap_is_named_when_it_holds_a_story_back() -> None:
    settings = EditionSettings(more_count=4, max_per_section=2)
    window = edition_window(DAY, "America/Juneau", settings)
    stories = [_story(i, "News", i) for i in range(1, 4)] + [_story(9, "Arts", 10)]
    edition = rank(stories, {}, window, settings)
    [out] = edition.left_out
    assert out.story.title == "Story 3" and out.reason == "section_cap"
    assert out.why == (
        "held back by the per-section cap: 2 stories of News above already "
        "([edition] max_per_section)"
    )


def test_a_story_that_led_a_recent_edition_does_not_lead_again_unless_an_editor_says() -> None:
    from digest.models import Overrides

    settings = EditionSettings(more_count=3, max_per_section=5)
    window = edition_window(DAY, "America/Juneau", settings)
    stories = [_story(i, "News", i) for i in range(1, 5)]
    led = {"https://x.example.org/1": "2025-12-04"}
    edition = rank(stories, {}, window, settings, led=led)
    assert edition.lead is not None and edition.lead.story.title == "Story 2"
    assert "Story 1" not in [p.story.title for p in edition.picks]
    assert [o.reason for o in edition.left_out] == ["led_recently"]
    chosen = rank(stories, {}, window, settings, Overrides(lead=stories[0].url), led=led)
    assert chosen.lead is not None and chosen.lead.story.title == "Story 1"
    assert chosen.left_out == []


def test_recent_leads_are_those_of_sent_editions_before_this_one(
    settings: Settings, store: Store
) -> None:
    from digest import jobs

    collect_all(settings, store)
    earlier = jobs.draft(settings, store, DAY)
    assert earlier.lead is not None
    after = (DAY + timedelta(days=1)).isoformat()
    # A draft that never went out: readers did not see its lead.
    assert store.editions.recent_leads(after, 3) == {}
    store.sends.create_send(earlier.name, "outbox", [])
    assert store.editions.recent_leads(after, 3) == {earlier.lead.story.url: earlier.name}
    assert store.editions.recent_leads(after, 0) == {}
    assert store.editions.recent_leads(earlier.name, 3) == {}  # not before itself
    # The next day's edition over 48 hours has the story in its window, and leaves it
    # out of its top: readers had it there yesterday.
    wide = replace(settings, edition=replace(settings.edition, window_hours=48))
    today = draft(store, wide, DAY + timedelta(days=1))
    assert earlier.lead.story.url not in {p.story.url for p in [today.lead, *today.more] if p}
    [out] = [o for o in today.left_out if o.story.url == earlier.lead.story.url]
    assert out.reason == "led_recently" and f"led the edition of {earlier.name}" in out.why


def test_most_read_is_the_sites_chart_over_its_own_window(settings: Settings, store: Store) -> None:
    from digest.models import PageViews
    from digest.rank import most_read_days

    collect_all(settings, store)
    window = edition_window(DAY, settings.newsroom.time_zone, settings.edition)
    # Page views are kept per local day: 24 h before 06:00 touch yesterday and today,
    # 48 h the day before too.
    assert most_read_days(window, 24) == (date(2025, 12, 4), date(2025, 12, 5))
    assert most_read_days(window, 48) == (date(2025, 12, 3), date(2025, 12, 5))
    old = "https://news.example.org/news/juneau-assembly-adopts-2026-budget/"
    store.stories.upsert_pageviews([PageViews(old, date(2025, 12, 3), 100_000, "test")])
    today = draft(store, settings, DAY)
    assert old not in [p.story.url for p in today.most_read[:1]]  # 12-03 is outside 24 h
    wide = replace(settings, edition=replace(settings.edition, most_read_hours=48))
    edition = draft(store, wide, DAY)
    assert edition.most_read[0].story.url == old and edition.most_read[0].views == 100_300
    # Its score's popularity is of the edition's window (300 views), not Most Read's.
    assert edition.most_read[0].breakdown["popularity"] == round(300 / 3770, 4)
    # Page views of a page that is no story (the front page) do not make the chart.
    store.stories.upsert_pageviews([PageViews("https://news.example.org/", DAY, 10**6, "t")])
    assert "https://news.example.org/" not in [
        p.story.url for p in draft(store, wide, DAY).most_read
    ]


def test_the_last_digests_clicks_count_in_popularity_when_set(
    settings: Settings, store: Store
) -> None:
    """[edition] digest_clicks_weight: a story readers clicked in the last digest gains
    popularity by the weight; the breakdown shows page views, clicks and the weight."""
    collect_all(settings, store)
    window = edition_window(DAY, settings.newsroom.time_zone, settings.edition)
    plain = rank_with(store, window, settings.edition, Overrides())
    last = plain.more[-1]  # the last story More took: the one clicks can move up
    assert "digest_clicks" not in last.breakdown  # off by default: page views alone
    weighted = replace(settings.edition, digest_clicks_weight=0.5)
    found = candidates(store, window, Overrides())
    views = store.stories.views_by_url(window.first_day, window.last_day)
    clicks = DigestClicks(0.5, {last.story.url: 40, plain.more[0].story.url: 10})
    edition = rank(found, views, window, weighted, clicks=clicks)
    pick = next(p for p in [edition.lead, *edition.more] if p.story.url == last.story.url)
    parts = pick.breakdown
    assert parts["digest_clicks"] == 1.0 and parts["digest_clicks_weight"] == 0.5
    assert parts["page_views"] == last.breakdown["popularity"]
    assert parts["popularity"] == round(0.5 * parts["page_views"] + 0.5, 4)
    assert pick.score > last.score
    assert [p.story.url for p in [edition.lead, *edition.more]].index(last.story.url) < len(
        [plain.lead, *plain.more]
    ) - 1  # it moved up
    assert "digest clicks 1.00 × 0.50" in parts_in_words(parts)


def test_digest_clicks_weight_is_checked(settings: Settings) -> None:
    path = settings.path
    text = path.read_text().replace("digest_clicks_weight = 0.0", "digest_clicks_weight = 1.5", 1)
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"\[edition\] digest_clicks_weight must be from 0"):
        config.load(path, env={})
