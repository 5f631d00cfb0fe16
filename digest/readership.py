"""What readers did with an edition: the report editors read (`digest report`, /reports).

Recipients come from the send ledger; everything else from the events the providers
posted (SendGrid's Event Webhook) and the clicks on the newsroom's own click links
(digest.clicks), counted by the database (store/readership.py). docs/reports.md says
what each number means and where it misleads:

- delivered, bounced, complaints: SendGrid's events; SMTP and the outbox send none,
  so for them these are unknown (None), not zero;
- unique opens: readers with at least one open SendGrid did not flag as a machine
  open (`sg_machine_open`: Apple Mail Privacy Protection fetches every picture of every
  message, read or not); the flagged ones are counted apart. The newsroom's own mail
  has no open pixel, so no opens at all;
- unique clicks: readers who clicked at least one link; click rate = unique clicks
  over delivered (or over recipients sent when there are no delivery events). A
  first-party click without a reader (per-reader tracking off) counts as one click;
- clicks per place: once per reader per link, each click without a reader once.

The bar charts are SVG written here (no script, no library), labels escaped.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from digest.collect.urls import is_safe_link
from digest.store import Store, subjects
from digest.store.readership import (
    KindCount,
    TrendRow,
    kind_counts,
    ledger,
    next_send_start,
    own_link_unsubscribes,
    place_counts,
    sent_editions,
    trend,
)

#: Editions in the trend.
TREND_EDITIONS = 30
SLOT_NAMES = {"lead": "Lead", "more": "More", "related": "Related", "most_read": "Most Read"}
_SLOT_ORDER = {"lead": 0, "more": 1, "related": 2, "most_read": 3}


@dataclass
class PlaceFigures:
    """Clicks on one link of the edition."""

    slot: str
    position: int
    title: str
    url: str
    clicks: int  # once per reader per link; each click without a reader once
    every_click: int

    @property
    def label(self) -> str:
        name = SLOT_NAMES.get(self.slot, self.slot)
        return name if self.slot == "lead" else f"{name} {self.position}"


@dataclass
class SubjectFigures:
    """One subject of the edition's subject test: its test group and how it did."""

    number: int  # 1, 2, 3 in the editor's order
    subject: str
    readers: int  # readers of its share of the test group
    clicked: int  # of them, readers who clicked anything
    click_rate: float | None
    winner: bool


@dataclass
class TrendPoint:
    edition: str
    recipients: int
    click_rate: float | None
    open_rate: float | None


@dataclass
class EditionReport:
    """The figures of one edition. None: not known for this edition's way of sending."""

    edition: str
    backend: str
    send_state: str
    recipients: int
    sent: int
    delivered: int | None
    bounced: int | None
    blocked: int | None
    dropped: int | None
    deferred: int | None
    complaints: int | None
    unsubscribes_provider: int
    unsubscribes_own_link: int
    unique_opens: int | None
    machine_opens: int | None
    unique_clicks: int
    anonymous_clicks: int
    click_base: int
    click_rate: float | None
    clicks_per_slot: dict[str, int] = field(default_factory=dict)
    places: list[PlaceFigures] = field(default_factory=list)
    other_clicks: int = 0
    trend: list[TrendPoint] = field(default_factory=list)
    provider_events: bool = False
    subjects: list[SubjectFigures] = field(default_factory=list)  # a subject test's
    subject_decision: str = ""  # how its winner was chosen

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lead_against_rest(self) -> str:
        """One line: the lead's clicks beside the best-clicked story of More and Most Read."""
        lead = next((p for p in self.places if p.slot == "lead"), None)
        parts = [f"lead {lead.clicks if lead else 0}"]
        for slot in ("more", "most_read"):
            best = max((p for p in self.places if p.slot == slot), key=lambda p: p.clicks,
                       default=None)  # fmt: skip
            if best is not None:
                parts.append(f"best of {SLOT_NAMES[slot]}: {best.label} {best.clicks}")
        return ", ".join(parts)


def _count(kinds: dict[str, KindCount], kind: str) -> int:
    found = kinds.get(kind)
    return found.readers if found else 0


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def report(
    store: Store, edition: str, *, trend_editions: int = TREND_EDITIONS
) -> EditionReport | None:
    """The report of an edition that was sent; None when it has no send."""
    sent = ledger(store, edition)
    if sent is None:
        return None
    kinds = kind_counts(store, edition)
    # Only SendGrid posts delivery events and opens; for SMTP and the outbox those are
    # unknown, not zero.
    provider = sent.backend == "sendgrid"
    delivered = _count(kinds, "delivered")
    bounce = kinds.get("bounce")
    opens = kinds.get("open")
    clicks = kinds.get("click")
    unique_clicks = clicks.readers if clicks else 0
    anonymous = clicks.anonymous if clicks else 0
    base = delivered or sent.sent
    known = (lambda value: value) if provider else (lambda _value: None)
    figures = EditionReport(
        edition=edition,
        backend=sent.backend,
        send_state=sent.state,
        recipients=sent.recipients,
        sent=sent.sent,
        delivered=known(delivered),
        bounced=known((bounce.readers - bounce.blocked_readers) if bounce else 0),
        blocked=known(bounce.blocked_readers if bounce else 0),
        dropped=known(_count(kinds, "dropped")),
        deferred=known(_count(kinds, "deferred")),
        complaints=known(_count(kinds, "spamreport")),
        unsubscribes_provider=_count(kinds, "unsubscribe") + _count(kinds, "group_unsubscribe"),
        unsubscribes_own_link=own_link_unsubscribes(
            store, sent.started, next_send_start(store, edition)
        ),
        unique_opens=known((opens.readers - opens.machine_readers) if opens else 0),
        machine_opens=known(opens.machine_readers if opens else 0),
        unique_clicks=unique_clicks,
        anonymous_clicks=anonymous,
        click_base=base,
        click_rate=_rate(unique_clicks, base) if unique_clicks or not anonymous else None,
        provider_events=provider,
    )
    places = place_counts(store, edition)
    figures.other_clicks = sum(p.clicks for p in places if not p.slot)
    places = [p for p in places if p.slot]
    titles = store.stories.stories_by_id({p.story_id for p in places if p.story_id is not None})
    for place in sorted(places, key=lambda p: (_SLOT_ORDER.get(p.slot, 9), p.position)):
        story = titles.get(place.story_id) if place.story_id is not None else None
        figures.places.append(
            PlaceFigures(
                place.slot,
                place.position,
                story.title if story else "(a story no longer stored)",
                # Linked on the report page only if a browser may follow it safely.
                story.url if story and is_safe_link(story.url) else "",
                place.counted,
                place.clicks,
            )
        )
        figures.clicks_per_slot[place.slot] = (
            figures.clicks_per_slot.get(place.slot, 0) + place.counted
        )
    # The editions before this one from the trend query; this one from its own counts,
    # already made (counting it again took as long as the rest of the report).
    newest = sent_editions(store, trend_editions, before=edition)
    earlier = [name for name in newest if name != edition][: trend_editions - 1]
    figures.trend = [_point(row) for row in trend(store, earlier)]
    this = TrendRow(edition, sent.recipients, delivered, figures.unique_opens or 0,
                    unique_clicks, anonymous)  # fmt: skip
    figures.trend.append(_point(this))
    _subject_test(store, edition, figures)
    return figures


def _subject_test(store: Store, edition: str, figures: EditionReport) -> None:
    """Each tested subject's figures (unique clicks of its test group, as the send chose
    by: digest.send.subjects) and the decision, when the edition had a subject test."""
    test = subjects.subject_test(store, edition)
    send = store.sends.get_send(edition)
    if test is None or test.test_batches is None or send is None:
        return
    groups = subjects.test_groups(store, edition, send.id)
    clicked = subjects.unique_clicks(store, edition, send.id)
    for i, subject in enumerate(test.subjects):
        readers, who = groups.get(i, 0), clicked.get(i, 0)
        figures.subjects.append(
            SubjectFigures(i + 1, subject, readers, who, _rate(who, readers), test.winner == i)
        )
    figures.subject_decision = test.decision or "the winner is not chosen yet"


def _point(row: TrendRow) -> TrendPoint:
    base = row.delivered or row.recipients
    return TrendPoint(
        row.edition,
        row.recipients,
        _rate(row.clickers, base) if row.clickers or not row.anonymous_clicks else None,
        _rate(row.human_openers, row.delivered) if row.delivered else None,
    )


def reports_list(store: Store, limit: int = 100) -> list[TrendPoint]:
    """The newest sent editions with their headline figures, newest first."""
    return [_point(row) for row in reversed(trend(store, sent_editions(store, limit)))]


# -- charts ---------------------------------------------------------------------------


def bar_chart(bars: list[tuple[str, float, str]], *, title: str, width: int = 560) -> str:
    """A horizontal bar chart as inline SVG: (label, value, value as shown) per bar."""
    row, label_width, pad = 24, 190, 6
    height = row * len(bars) + 2 * pad
    most = max((value for _, value, _ in bars), default=0) or 1
    room = width - label_width - 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" class="chart">',
        f"<title>{html.escape(title)}</title>",
    ]
    for number, (label, value, shown) in enumerate(bars):
        y = pad + number * row
        length = max(1, round(room * value / most)) if value else 0
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="13" '
            f'fill="#333">{html.escape(short)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{length}" height="16" fill="#1a4e8a">'
            f"<title>{html.escape(label)}: {html.escape(shown)}</title></rect>"
            f'<text x="{label_width + length + 6}" y="{y + 16}" font-size="13" '
            f'fill="#333">{html.escape(shown)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def places_chart(figures: EditionReport) -> str:
    return bar_chart(
        [(f"{p.label}: {p.title}", p.clicks, str(p.clicks)) for p in figures.places],
        title=f"Clicks per story, {figures.edition}",
    )


def trend_chart(figures: EditionReport) -> str:
    return bar_chart(
        [
            (p.edition, p.click_rate or 0, "—" if p.click_rate is None else f"{p.click_rate:.1%}")
            for p in figures.trend
        ],
        title="Click rate, last editions",
    )
