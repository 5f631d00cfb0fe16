"""Rank: choose the lead, "More in News" and "Most Read"; keep why each story is where it is.

Score = 0.35 x prominence + 0.25 x recency + 0.25 x popularity + 0.15 x image,
each part 0..1:
- prominence: where the newsroom placed it in its feed (1 = top): the editors'
  own judgement of importance, which the digest should follow by default;
- recency: 1 for a story published at send time, 0 for one at the window's start;
- popularity: its page views in the window over the most-viewed candidate's; with
  [edition] digest_clicks_weight w > 0, (1 - w) x that + w x its readers' clicks in
  the last sent digest over the most-clicked candidate's (the breakdown then shows
  "digest_clicks" and the weight beside popularity);
- image: a lead without a picture makes a poor email, so pictures win ties.
The parts are stored with every pick so an editor can see the arithmetic.

Left out, and why (Edition.left_out): every candidate in neither the lead nor More
says which rule kept it out, in the order the rules apply:
- dropped by an editor;
- led a recent edition: a story that led one of the last [edition] recent_leads
  editions that were sent is left out of the lead and More (readers saw it at the
  top already); an editor may still make it lead or pin it;
- held back by the per-section cap ([edition] max_per_section);
- under the cut: More was full; its score beside the cut's (the last story More took
  by score).

Most Read is the site's own chart: every stored story by its page views over the local
days [edition] most_read_hours before the send touch (most_read_days), not only the
window's candidates. Stories the lead or More show already are skipped and the list
goes on with the next most read, unless [edition] most_read_repeats; dropped stories
never appear.

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
from digest.models import Edition, LeftOut, LeftOutReason, Overrides, Pick, Slot, Story
from digest.store import Store, readership

WEIGHTS = {"prominence": 0.35, "recency": 0.25, "popularity": 0.25, "image": 0.15}


@dataclass(frozen=True)
class Window:
    name: str
    send_at: datetime
    start: datetime
    end: datetime
    first_day: date
    last_day: date
    zone_name: str = "UTC"


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
        zone_name=zone_name,
    )


def most_read_days(window: Window, hours: int) -> tuple[date, date]:
    """The local days whose page views make Most Read: every day the `hours` before the
    send touch, each counted whole, since page views are kept per local day.

    With send_time 06:00 and 24 hours: yesterday's and today's rows, where today's
    hold what was collected by the send (the small hours). Counting a day in part
    would be a guess at when in the day its pages were read.
    """
    from zoneinfo import ZoneInfo

    start = window.send_at - timedelta(hours=hours)
    return start.astimezone(ZoneInfo(window.zone_name)).date(), window.last_day


@dataclass(frozen=True)
class DigestClicks:
    """Readers' clicks per story URL in the last sent digest, and how much they count
    in popularity ([edition] digest_clicks_weight)."""

    weight: float
    clicks: dict[str, int]

    def share(self, url: str, most: int) -> float:
        return round(min(1.0, self.clicks.get(url, 0) / most), 4) if most else 0.0


def score(
    story: Story,
    views: int,
    max_views: int,
    window: Window,
    clicks: DigestClicks | None = None,
    max_clicks: int = 0,
) -> dict[str, float]:
    span = (window.end - window.start).total_seconds()
    age = (window.end - story.published_at).total_seconds()
    # At most 1: a Most Read story from outside the window may outsell them all.
    viewed = round(min(1.0, views / max_views), 4) if max_views else 0.0
    parts = {
        "prominence": round(story.prominence, 4),
        "recency": round(max(0.0, min(1.0, 1 - age / span)), 4),
        "popularity": viewed,
        "image": 1.0 if story.image_url else 0.0,
    }
    if clicks is not None and clicks.weight > 0:
        clicked = clicks.share(story.url, max_clicks)
        parts["page_views"] = viewed
        parts["digest_clicks"] = clicked
        parts["digest_clicks_weight"] = clicks.weight
        parts["popularity"] = round((1 - clicks.weight) * viewed + clicks.weight * clicked, 4)
    parts["total"] = round(sum(WEIGHTS[k] * parts[k] for k in WEIGHTS), 4)
    return parts


def rank(
    candidates: list[Story],
    views: dict[str, int],
    window: Window,
    settings: EditionSettings,
    overrides: Overrides | None = None,
    *,
    chart: list[tuple[Story, int]] | None = None,
    led: dict[str, str] | None = None,
    clicks: DigestClicks | None = None,
) -> Edition:
    """Build the edition from the window's stories and their page views.

    chart: the site's most read stories with their views in Most Read's window, most
    first (store.stories.most_viewed); None = the candidates by `views`. led: story
    URL -> the recent edition it led (store.editions.recent_leads). clicks: the last
    digest's clicks, counted in popularity with their weight (None: page views alone).

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
    max_views = max((views.get(s.url, 0) for s in candidates if s.url not in dropped), default=0)
    max_clicks = 0
    if clicks is not None:
        max_clicks = max(
            (clicks.clicks.get(s.url, 0) for s in candidates if s.url not in dropped), default=0
        )
    scored = []
    for story in candidates:
        parts = score(story, views.get(story.url, 0), max_views, window, clicks, max_clicks)
        scored.append((parts["total"], story.published_at, story.url, story, parts))
    # Highest score first; ties go to the newer story, then a stable URL order.
    scored.sort(key=lambda item: (-item[0], -item[1].timestamp(), item[2]))
    by_url = {item[2]: item for item in scored}

    def pick(url: str, slot: Slot, position: int, note: str = "") -> Pick:
        total, _, _, story, parts = by_url[url]
        return Pick(story, slot, position, total, parts, views.get(url, 0), note)

    out: dict[str, tuple[LeftOutReason, str]] = {}
    chosen = {edits.lead, *edits.pinned}
    for url in by_url:
        if url in dropped:
            out[url] = ("dropped", "dropped by an editor")
        elif led and url in led and url not in chosen:
            out[url] = (
                "led_recently",
                f"led the edition of {led[url]}; a story leads once in "
                f"{settings.recent_leads} sent editions ([edition] recent_leads)",
            )
    eligible = [item for item in scored if item[2] not in out]

    lead: Pick | None = None
    if edits.lead in by_url and edits.lead not in dropped:
        lead = pick(edits.lead, "lead", 1, "lead chosen by an editor")
    elif eligible:
        lead = pick(eligible[0][2], "lead", 1)
    taken = {lead.story.url} if lead else set()
    per_section: Counter[str] = Counter()
    if lead:
        per_section[lead.story.section.lower()] += 1
    more: list[Pick] = []
    for url in edits.pinned:
        if url in by_url and url not in taken and url not in dropped:
            taken.add(url)
            more.append(pick(url, "more", len(more) + 1, "pinned by an editor"))
            per_section[by_url[url][3].section.lower()] += 1
    cut: float | None = None  # the score of the last story More took by score
    for total, _, url, story, _ in eligible:
        section = story.section.lower()
        if url in taken:
            continue
        if len(more) >= settings.more_count:
            out[url] = ("under_cut", _under_cut(total, cut, len(more)))
        elif section and per_section[section] >= settings.max_per_section:
            out[url] = (
                "section_cap",
                f"held back by the per-section cap: {per_section[section]} stories of "
                f"{story.section} above already ([edition] max_per_section)",
            )
        else:
            per_section[section] += 1
            taken.add(url)
            more.append(pick(url, "more", len(more) + 1))
            cut = total

    shown = set() if settings.most_read_repeats else taken
    if chart is None:
        chart = sorted(
            ((s, views.get(s.url, 0)) for s in candidates if views.get(s.url, 0) > 0),
            key=lambda item: (-item[1], item[0].url),
        )
    most_read: list[Pick] = []
    for story, read in chart:
        if len(most_read) >= settings.most_read_count:
            break
        if read <= 0 or story.url in dropped or story.url in shown:
            continue
        if story.url in by_url:
            total, _, _, story, parts = by_url[story.url]
        else:  # from outside the window: scored as if it were in it, for the record
            parts = score(story, views.get(story.url, 0), max_views, window)
            total = parts["total"]
        most_read.append(Pick(story, "most_read", len(most_read) + 1, total, parts, read))

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
        note=edits.note,
        left_out=[
            LeftOut(story, *out[url], total, parts)
            for total, _, url, story, parts in scored
            if url in out and url not in taken
        ],
    )


def _under_cut(total: float, cut: float | None, full: int) -> str:
    if cut is None:
        return f"under the cut: score {total:.3f}; More is full with {full} pinned stories"
    return f"under the cut: score {total:.3f}, the last story in More scored {cut:.3f}"


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
    # Enough of the chart to fill Most Read past every story it may skip.
    skipped = 1 + max(settings.more_count, len(overrides.pinned)) + len(overrides.dropped)
    chart = store.stories.most_viewed(
        *most_read_days(window, settings.most_read_hours), settings.most_read_count + skipped
    )
    led = store.editions.recent_leads(window.name, settings.recent_leads)
    clicks = None
    if settings.digest_clicks_weight > 0:
        last = readership.last_digest_clicks(store, window.name)
        clicks = DigestClicks(settings.digest_clicks_weight, last[1] if last else {})
    found = candidates(store, window, overrides)
    return rank(found, views, window, settings, overrides, chart=chart, led=led, clicks=clicks)


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
