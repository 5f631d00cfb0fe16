"""Rank: choose the lead, "More in News" and "Most Read"; keep why each story is where it is.

Score = 0.35 x prominence + 0.25 x recency + 0.25 x popularity + 0.15 x image,
each part 0..1:
- prominence: where the newsroom placed it in its feed (1 = top): the editors'
  own judgement of importance, which the digest should follow by default;
- recency: 1 for a story published at send time, 0 for one at the window's start;
- popularity: its page views in the window over the most-viewed candidate's;
- image: a lead without a picture makes a poor email, so pictures win ties.
The parts are stored with every pick so an editor can see the arithmetic.

Section preferences (variant_key, variant): a reader who chose sections gets the
lead (the newsroom's top story is for everyone), the "More" stories from those
sections, and Most Read (the site's own chart). A preference that matches none of
the day's "More" stories gets the whole edition: a choice of sections picks among
the day's stories, it never empties an edition.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from digest.config import EditionSettings, Settings
from digest.models import Edition, Overrides, Pick, Slot, Story
from digest.store import Store

WEIGHTS = {"prominence": 0.35, "recency": 0.25, "popularity": 0.25, "image": 0.15}


@dataclass(frozen=True)
class Window:
    name: str
    send_at: datetime
    start: datetime
    end: datetime
    first_day: date
    last_day: date


def edition_window(day: date, zone_name: str, settings: EditionSettings) -> Window:
    """The edition for a local date: sent at send_time there, covering the hours before."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)
    local_send = datetime.combine(day, settings.send_time, tzinfo=zone)
    send_at = local_send.astimezone(UTC)
    start = send_at - timedelta(hours=settings.window_hours)
    return Window(
        name=day.isoformat(),
        send_at=send_at,
        start=start,
        end=send_at,
        first_day=start.astimezone(zone).date(),
        last_day=local_send.date(),
    )


def score(story: Story, views: int, max_views: int, window: Window) -> dict[str, float]:
    span = (window.end - window.start).total_seconds()
    age = (window.end - story.published_at).total_seconds()
    parts = {
        "prominence": round(story.prominence, 4),
        "recency": round(max(0.0, min(1.0, 1 - age / span)), 4),
        "popularity": round(views / max_views, 4) if max_views else 0.0,
        "image": 1.0 if story.image_url else 0.0,
    }
    parts["total"] = round(sum(WEIGHTS[k] * parts[k] for k in WEIGHTS), 4)
    return parts


def rank(
    candidates: list[Story],
    views: dict[str, int],
    window: Window,
    settings: EditionSettings,
    overrides: Overrides | None = None,
) -> Edition:
    """Build the edition from the window's stories and their page views.

    "Most Read" is left out when there is no page-view data at all: an empty
    section is honest, a guessed one is not.

    An editor's overrides win over the scores: a dropped story is in no slot; the
    chosen lead leads; pinned stories open "More" in the editor's order (the
    per-section cap does not hold them back, and they may make "More" longer than
    more_count); the subject replaces the lead's title. A pinned or chosen story
    that is not among the candidates is simply absent. The scores are kept either
    way, and each such pick says what the editor did (Pick.note).
    """
    edits = overrides or Overrides()
    dropped = set(edits.dropped)
    candidates = [s for s in candidates if s.url not in dropped]
    max_views = max((views.get(s.url, 0) for s in candidates), default=0)
    scored = []
    for story in candidates:
        parts = score(story, views.get(story.url, 0), max_views, window)
        scored.append((parts["total"], story.published_at, story.url, story, parts))
    # Highest score first; ties go to the newer story, then a stable URL order.
    scored.sort(key=lambda item: (-item[0], -item[1].timestamp(), item[2]))
    by_url = {item[2]: item for item in scored}

    def pick(url: str, slot: Slot, position: int, note: str = "") -> Pick:
        total, _, _, story, parts = by_url[url]
        return Pick(story, slot, position, total, parts, views.get(url, 0), note)

    lead: Pick | None = None
    if edits.lead in by_url:
        lead = pick(edits.lead, "lead", 1, "lead chosen by an editor")
    elif scored:
        lead = pick(scored[0][2], "lead", 1)
    taken = {lead.story.url} if lead else set()
    per_section: Counter[str] = Counter()
    if lead:
        per_section[lead.story.section.lower()] += 1
    more: list[Pick] = []
    for url in edits.pinned:
        if url in by_url and url not in taken:
            taken.add(url)
            more.append(pick(url, "more", len(more) + 1, "pinned by an editor"))
            per_section[by_url[url][3].section.lower()] += 1
    for _, _, url, story, _ in scored:
        if len(more) >= settings.more_count:
            break
        section = story.section.lower()
        if url in taken or (section and per_section[section] >= settings.max_per_section):
            continue
        per_section[section] += 1
        taken.add(url)
        more.append(pick(url, "more", len(more) + 1))

    most_read: list[Pick] = []
    if any(views.get(s.url, 0) > 0 for s in candidates):
        by_views = sorted(
            (s for s in candidates if views.get(s.url, 0) > 0),
            key=lambda s: (-views[s.url], s.url),
        )
        for position, story in enumerate(by_views[: settings.most_read_count], start=1):
            most_read.append(pick(story.url, "most_read", position))

    subject = edits.subject or (lead.story.title if lead else f"Your digest for {window.name}")
    preheader = lead.story.dek if lead else ""
    return Edition(
        name=window.name,
        send_at=window.send_at,
        window_start=window.start,
        window_end=window.end,
        subject=subject,
        preheader=preheader,
        lead=lead,
        more=more,
        most_read=most_read,
    )


def draft(store: Store, settings: Settings, day: date) -> Edition:
    """Rank the day's candidates from the store, with the editors' overrides, and save it.

    A story an editor pinned or chose as lead from outside the window (yesterday's
    big story, say) is a candidate too.
    """
    window = edition_window(day, settings.newsroom.time_zone, settings.edition)
    overrides = store.editions.load_overrides(window.name)
    edition = rank_with(store, window, settings.edition, overrides)
    store.editions.save_edition(edition)
    return edition


def candidates(store: Store, window: Window, overrides: Overrides) -> list[Story]:
    """The window's stories, and any the overrides choose as lead or pin from outside it."""
    found = store.stories.stories_between(window.start, window.end)
    present = {s.url for s in found}
    wanted = [u for u in [overrides.lead, *overrides.pinned] if u and u not in present]
    return found + list(store.stories.stories_by_url(wanted).values())


def rank_with(
    store: Store, window: Window, settings: EditionSettings, overrides: Overrides
) -> Edition:
    """The edition these overrides make of the window's stories (nothing is saved)."""
    views = store.stories.views_by_url(window.first_day, window.last_day)
    return rank(candidates(store, window, overrides), views, window, settings, overrides)


def variant_key(edition: Edition, sections: str) -> str:
    """Which copy of the edition a reader with these preferences gets ("" = the whole one).

    sections: ";"-joined section names, as subscribers keep them. The key is the
    chosen sections that the edition's "More" stories actually have, lower-case
    and sorted, so readers whose choices come to the same stories share one copy.
    """
    wanted = {part.strip().lower() for part in sections.split(";") if part.strip()}
    present = {p.story.section.lower() for p in edition.more if p.story.section}
    chosen = wanted & present
    if not chosen or chosen == present:
        return ""
    return ";".join(sorted(chosen))


def variant(edition: Edition, key: str) -> Edition:
    """The edition as readers of variant `key` get it (see variant_key)."""
    if not key:
        return edition
    chosen = set(key.split(";"))
    more = [p for p in edition.more if p.story.section.lower() in chosen]
    return replace(edition, more=[replace(p, position=i) for i, p in enumerate(more, start=1)])
