"""An edition at the terminal, for `digest draft` and `digest edit`: each slot, why each
story is where it is, and why each candidate left out is out.

Headlines are cut to the terminal's width (rich's console width: COLUMNS, else the
terminal's) at a word, with an ellipsis; the score's parts are named in words, always
in the formula's order (rank.WEIGHTS), so two lines compare at a glance.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from rich.cells import cell_len

from digest import editor
from digest.cli.base import console
from digest.models import Edition, LeftOut, Pick
from digest.rank import WEIGHTS

#: The score's parts as an editor says them (rank.WEIGHTS's keys are the code's names).
PART_WORDS = {"prominence": "prominence", "recency": "recency", "popularity": "popularity",
              "image": "picture"}  # fmt: skip
#: Room for a headline however narrow the terminal: below this, the line wraps instead.
NARROWEST_HEADLINE = 20
_INDENT = " " * 13


def fit(text: str, width: int) -> str:
    """The text in at most `width` cells: whole words and an ellipsis when it is longer.
    A first word wider than that alone is cut within (there is no word to stop at)."""
    text = " ".join(text.split())
    if cell_len(text) <= width:
        return text
    room = max(1, width - 1)  # the ellipsis takes one cell
    cut = ""
    for word in text.split(" "):
        longer = f"{cut} {word}" if cut else word
        if cell_len(longer) > room:
            break
        cut = longer
    if not cut:  # one long word (or a script written without spaces)
        for char in text:
            if cell_len(cut + char) > room:
                break
            cut += char
        while cut and unicodedata.category(cut[-1])[0] == "M":
            cut = cut[:-1]  # never part a letter from its accent
    return cut.rstrip(" ,;:.-–—") + "…"


def parts_in_words(breakdown: dict[str, float]) -> str:
    """ "prominence 0.35 · recency 0.80 · popularity 0.10 · picture 1.00"; a related
    story's: "similarity 0.42" """
    if "similarity" in breakdown:
        return f"similarity {breakdown['similarity']:.2f}"
    words = [f"{PART_WORDS[k]} {breakdown.get(k, 0.0):.2f}" for k in WEIGHTS]
    if "digest_clicks" in breakdown:  # popularity = page views and the last digest's clicks
        popularity = list(WEIGHTS).index("popularity")
        words[popularity] += (
            f" (page views {breakdown.get('page_views', 0.0):.2f}, digest clicks "
            f"{breakdown['digest_clicks']:.2f} × {breakdown.get('digest_clicks_weight', 0.0):.2f})"
        )
    return " · ".join(words)


def _line(head: str, title: str, tail: str) -> None:
    width = console.width
    room = max(NARROWEST_HEADLINE, width - cell_len(head) - cell_len(tail))
    console.print(f"{head}{fit(title, room)}{tail}", markup=False, highlight=False)


def _pick(pick: Pick) -> None:
    views = f" · {pick.views:,} views" if pick.views else ""
    section = f"  {pick.story.section}" if pick.story.section else ""
    _line(f"  {pick.position:>2}  {pick.score:.3f}  ", pick.story.title, section + views)
    why = parts_in_words(pick.breakdown) + (f" · {pick.note}" if pick.note else "")
    console.print(_INDENT + why, markup=False, highlight=False)


def _left_out(out: LeftOut, in_most_read: bool, url: bool) -> None:
    section = f"  {out.story.section}" if out.story.section else ""
    _line(f"      {out.score:.3f}  ", out.story.title, section)
    also = " (it is in Most Read)" if in_most_read else ""
    console.print(_INDENT + out.why + also, markup=False, highlight=False)
    if url:
        console.print(f"{_INDENT}<{out.story.url}>", markup=False, highlight=False)


def print_edition(edition: Edition, urls: bool = False) -> None:
    """The edition; urls: each left-out story's URL too, for naming it in a change."""
    console.print(f"[bold]Edition {edition.name}[/bold]  ({edition.status})")
    console.print(f"Subject: {edition.subject}", highlight=False, markup=False)
    if edition.note:
        first = edition.note.splitlines()[0]
        _line("Note: ", first, "" if first == edition.note else " (more)")
    for title, picks in (
        ("Lead", [edition.lead] if edition.lead else []),
        ("Related", edition.related),
        ("More in News", edition.more),
        ("Most Read", edition.most_read),
    ):
        console.print(f"[bold]{title}[/bold]")
        for pick in picks:
            _pick(pick)
        if not picks:
            note = {
                "Most Read": "no page-view data for this window",
                "Related": "no story alike enough",
            }.get(title, "no stories")
            console.print(f"  (left out: {note})")
    if edition.left_out:
        console.print("[bold]Left out, and why[/bold]")
        most_read = {p.story.url for p in edition.most_read}
        for out in edition.left_out:
            _left_out(out, out.story.url in most_read, urls)


def print_editor_view(view: editor.EditorView) -> None:
    print_edition(view.edition, urls=True)
    if view.overrides.subject:
        console.print("(subject set by an editor)")
    placed = {o.story.url for o in view.edition.left_out}
    missing = [s for s in [*view.others, *view.dropped] if s.url not in placed]
    if missing:  # left out of an edition drafted before reasons were kept, say
        console.print("[bold]Also named by the editors or in the window[/bold]")
        for story in missing:
            when = story.published_at.strftime("%Y-%m-%d %H:%M")
            _line(f"  {when}  ", story.title, f"  <{story.url}>")
    console.print("Name a story by its URL or a word of its headline: `digest edit --pin WORD`.")
    if view.events:
        console.print("[bold]Changes[/bold]")
        for event in view.events[-10:]:
            when = event.at.astimezone().strftime("%Y-%m-%d %H:%M")
            console.print(f"  {when}  {event.who}: {event.action}", markup=False)


def edition_json(edition: Edition) -> dict[str, Any]:
    def pick(p: Pick) -> dict[str, Any]:
        return {
            "position": p.position,
            "title": p.story.title,
            "url": p.story.url,
            "section": p.story.section,
            "published_at": p.story.published_at.isoformat(),
            "score": p.score,
            "breakdown": p.breakdown,
            "views": p.views,
            "note": p.note,
        }

    return {
        "edition": edition.name,
        "send_at": edition.send_at.isoformat(),
        "window": [edition.window_start.isoformat(), edition.window_end.isoformat()],
        "subject": edition.subject,
        "preheader": edition.preheader,
        "note": edition.note,
        "status": edition.status,
        "lead": pick(edition.lead) if edition.lead else None,
        "more": [pick(p) for p in edition.more],
        "most_read": [pick(p) for p in edition.most_read],
        "related": [pick(p) | {"under": p.under} for p in edition.related],
        "left_out": [
            {
                "title": o.story.title,
                "url": o.story.url,
                "section": o.story.section,
                "reason": o.reason,
                "why": o.why,
                "score": o.score,
                "breakdown": o.breakdown,
            }
            for o in edition.left_out
        ],
    }
