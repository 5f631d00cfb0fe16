"""Editors steer a draft: choose the lead, pin, drop and reorder stories, add or drop
related stories, set the subject and the note to readers (digest.note), and approve the
edition.

Changes are kept as overrides (models.Overrides), apart from the ranking, and the
edition is ranked again with them at once, so the preview shows them and a later
collect (which ranks again) keeps them. Every change is recorded with who made it.
The CLI (`digest edit`, `digest approve`) and the web app's editor pages call these
functions and nothing else.

Rules an editor can rely on:
- an edition that has a send can no longer change (some readers may have it);
- changing an approved edition withdraws the approval (what was approved is not
  what would go out any more), and says so;
- approving renders every copy first, so a broken template stops the approval,
  not the 6 a.m. send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal, get_args

from digest import jobs, note, rank
from digest.collect.urls import canonical_url
from digest.config import Settings
from digest.errors import DigestError
from digest.models import Edition, EditorEvent, Overrides, Story
from digest.store import Store

Action = Literal[
    "lead", "pin", "unpin", "drop", "restore", "up", "down", "subject", "note", "reset",
    "relate", "unrelate",
]  # fmt: skip
ACTIONS: tuple[str, ...] = get_args(Action)

#: Longer subjects are cut off by every inbox; a newline would split the header.
MAX_SUBJECT = 150


class EditError(DigestError):
    """An editor's change that cannot be made: the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    """One change an editor asks for. `ref` names a story (its URL, or a unique part
    of its URL or headline), or for "subject" the new subject ("" = the lead's title),
    for "note" the editors' note ("" = none)."""

    action: Action
    ref: str = ""


@dataclass
class EditResult:
    edition: Edition
    actions: list[str] = field(default_factory=list)  # what changed, in words
    approval_withdrawn: bool = False


@dataclass
class EditorView:
    """What an editor looks at: the draft, the stories that did not make it, the
    ones dropped by hand, the overrides and who did what."""

    edition: Edition
    others: list[Story]  # in the window, not the lead nor in More, not dropped (to pin)
    dropped: list[Story]
    overrides: Overrides
    events: list[EditorEvent]
    has_send: bool


def _day(name: str) -> date:
    try:
        return date.fromisoformat(name)
    except ValueError:
        raise EditError(f"{name!r} is not an edition date; give it as YYYY-MM-DD") from None


def _window(settings: Settings, name: str) -> rank.Window:
    return rank.edition_window(_day(name), settings.newsroom.time_zone, settings.edition)


def _stories(
    settings: Settings, store: Store, edition: Edition, overrides: Overrides
) -> list[Story]:
    """Every story an editor may name for this edition: the ranking's candidates, the
    dropped ones and whatever the edition holds now."""
    found = {s.url: s for s in rank.candidates(store, _window(settings, edition.name), overrides)}
    for pick in [*edition.picks, *edition.related]:
        found.setdefault(pick.story.url, pick.story)
    missing = [u for u in overrides.dropped if u not in found]
    found.update(store.stories.stories_by_url(missing))
    return sorted(found.values(), key=lambda s: (-s.published_at.timestamp(), s.url))


def find_story(store: Store, stories: Sequence[Story], ref: str, edition: str) -> Story:
    """The one story `ref` names: a URL, or a part of one story's URL or headline."""
    wanted = ref.strip()
    if not wanted:
        raise EditError("name a story: its URL, or a word of its headline or URL")
    url = canonical_url(wanted) if "://" in wanted else ""
    for story in stories:
        if story.url == url:
            return story
    if url:
        stored = store.stories.stories_by_url([url])
        if url in stored:
            return stored[url]
    needle = wanted.lower()
    matches = [s for s in stories if needle in s.url.lower() or needle in s.title.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise EditError(
            f"no story of edition {edition} matches {ref!r}; "
            f"`digest edit {edition}` lists them, with their URLs"
        )
    listed = "; ".join(f"{s.title} <{s.url}>" for s in matches[:4])
    more = f" and {len(matches) - 4} more" if len(matches) > 4 else ""
    raise EditError(
        f"{ref!r} matches {len(matches)} stories of edition {edition}: {listed}{more}. "
        "Give more of the headline, or the URL"
    )


def _subject(value: str) -> str:
    subject = " ".join(value.split())  # no newlines: a subject is one header line
    if len(subject) > MAX_SUBJECT:
        raise EditError(
            f"the subject is {len(subject)} characters; inboxes cut it off, so keep it "
            f"under {MAX_SUBJECT}"
        )
    return subject


def _without(urls: Iterable[str], url: str) -> list[str]:
    return [u for u in urls if u != url]


def _note(value: str, max_chars: int, overrides: Overrides) -> tuple[Overrides, str]:
    text = note.clean(value, max_chars)
    if not text:
        return replace(overrides, note=""), "removed the note to readers"
    start = " ".join(text.split())
    start = start if len(start) <= 60 else start[:59].rsplit(" ", 1)[0] + "…"
    return replace(overrides, note=text), f"set the note to readers: “{start}”"


def _apply(
    settings: Settings,
    change: Change,
    overrides: Overrides,
    current: Edition,
    store: Store,
    stories: Sequence[Story],
) -> tuple[Overrides, str]:
    """The overrides after one change, and the change in words."""
    if change.action == "reset":
        return Overrides(), "undid every change"
    if change.action == "subject":
        subject = _subject(change.ref)
        said = (
            f"set the subject to “{subject}”" if subject else "let the lead's title be the subject"
        )
        return replace(overrides, subject=subject), said
    if change.action == "note":
        return _note(change.ref, settings.limits.note_max_chars, overrides)
    story = find_story(store, stories, change.ref, current.name)
    url, title = story.url, story.title
    if change.action in ("relate", "unrelate"):
        return _related_change(change.action, story, overrides)
    lead = "" if overrides.lead == url else overrides.lead
    if change.action == "lead":
        return (
            replace(overrides, lead=url, pinned=_without(overrides.pinned, url),
                    dropped=_without(overrides.dropped, url)),
            f"made “{title}” the lead",
        )  # fmt: skip
    if change.action == "pin":
        pinned = overrides.pinned if url in overrides.pinned else [*overrides.pinned, url]
        return (
            replace(overrides, lead=lead, pinned=pinned, dropped=_without(overrides.dropped, url)),
            f"pinned “{title}”",
        )
    if change.action == "unpin":
        if url not in overrides.pinned and overrides.lead != url:
            raise EditError(f"“{title}” is not pinned, so it cannot be unpinned")
        return (
            replace(overrides, lead=lead, pinned=_without(overrides.pinned, url)),
            f"unpinned “{title}”",
        )
    if change.action == "drop":
        dropped = overrides.dropped if url in overrides.dropped else [*overrides.dropped, url]
        return (
            replace(overrides, lead=lead, pinned=_without(overrides.pinned, url), dropped=dropped),
            f"dropped “{title}”",
        )
    if change.action == "restore":
        if url not in overrides.dropped:
            raise EditError(f"“{title}” was not dropped, so there is nothing to restore")
        return replace(overrides, dropped=_without(overrides.dropped, url)), f"restored “{title}”"
    # up / down: within "More", as the reader sees it. The new order is pinned down to
    # the lower of the two places, so the scores cannot undo it.
    order = [p.story.url for p in current.more]
    if url not in order:
        raise EditError(f"“{title}” is not in More; pin it first, then move it")
    at = order.index(url)
    to = at - 1 if change.action == "up" else at + 1
    if not 0 <= to < len(order):
        raise EditError(f"“{title}” is {'first' if to < 0 else 'last'} in More already")
    order[at], order[to] = order[to], order[at]
    pinned = order[: max(at, to) + 1]
    return replace(overrides, pinned=pinned), f"moved “{title}” {change.action}"


def _related_change(action: str, story: Story, overrides: Overrides) -> tuple[Overrides, str]:
    """Add a story to the related list under the lead, or keep one out of every related
    list (digest.related); each undoes the other."""
    url = story.url
    added = _without(overrides.related_added, url)
    dropped = _without(overrides.related_dropped, url)
    if action == "relate":
        return (
            replace(overrides, related_added=[*added, url], related_dropped=dropped),
            f"added “{story.title}” to the related stories",
        )
    return (
        replace(overrides, related_added=added, related_dropped=[*dropped, url]),
        f"dropped “{story.title}” from the related stories",
    )


def _ranked(settings: Settings, store: Store, name: str, overrides: Overrides) -> Edition:
    """The edition as these overrides would make it, without saving anything."""
    return rank.rank_with(store, _window(settings, name), settings.edition, overrides)


def _editable(store: Store, name: str) -> Edition:
    edition = jobs.load_edition(store, name)
    if store.sends.get_send(name) is not None:
        raise EditError(
            f"edition {name} is being sent or was sent, so it can no longer change; "
            f"`digest sends {name}` shows how far it got"
        )
    return edition


def edit(
    settings: Settings, store: Store, name: str, changes: Sequence[Change], who: str
) -> EditResult:
    """Make the changes in order, rank the edition again with them, render its copies.

    Nothing is saved unless every change can be made: a change that names no story
    (or an ambiguous one) stops them all with the reason.
    """
    edition = _editable(store, name)
    if not changes:
        return EditResult(edition)
    for change in changes:
        if change.action not in ACTIONS:
            raise EditError(f"unknown change {change.action!r}; one of: {', '.join(ACTIONS)}")
    for _attempt in range(5):
        overrides, revision = store.editions.overrides_revision(name)
        stories = _stories(settings, store, edition, overrides)
        current = _ranked(settings, store, name, overrides)
        actions: list[str] = []
        for change in changes:
            overrides, said = _apply(settings, change, overrides, current, store, stories)
            actions.append(said)
            current = _ranked(settings, store, name, overrides)
        withdrawn = edition.status == "approved"
        if withdrawn:
            actions.append("approval withdrawn by the change; approve it again")
        if store.editions.save_overrides(name, overrides, revision, who, actions):
            break
        # Another editor saved in between: apply these changes to theirs.
        edition = _editable(store, name)
    else:
        raise EditError(f"edition {name} is being changed by others right now; try again")
    if withdrawn:
        store.editions.set_edition_status(name, "draft")
    return EditResult(jobs.draft(settings, store, _day(name)), actions, withdrawn)


def approve(settings: Settings, store: Store, name: str, who: str) -> Edition:
    """Approve the edition as it stands; its copies are rendered (and checked) first."""
    edition = _editable(store, name)
    if edition.status == "approved":
        return edition
    if edition.lead is None:
        raise EditError(
            f"edition {name} has no stories, so there is nothing to approve; check the "
            f"sources (`digest collect`), then `digest draft --date {name}`"
        )
    jobs.prepare_copies(settings, store, edition)
    store.editions.set_edition_status(name, "approved")
    store.editions.log_edition_event(name, who, "approved the edition")
    return replace(edition, status="approved")


def withdraw(store: Store, name: str, who: str) -> Edition:
    """Take an approval back: the edition is a draft again (a collect may re-rank it)."""
    edition = _editable(store, name)
    if edition.status != "approved":
        raise EditError(f"edition {name} is {edition.status!r}, not approved; nothing to withdraw")
    store.editions.set_edition_status(name, "draft")
    store.editions.log_edition_event(name, who, "withdrew the approval")
    return replace(edition, status="draft")


def draft_if_missing(settings: Settings, store: Store, name: str) -> Edition | None:
    """Draft the edition if it has never been drafted: the new draft, or None if it was."""
    if store.editions.load_edition(name) is not None:
        return None
    return jobs.draft(settings, store, _day(name))


def view(settings: Settings, store: Store, name: str) -> EditorView:
    edition = jobs.load_edition(store, name)
    overrides = store.editions.load_overrides(name)
    stories = _stories(settings, store, edition, overrides)
    placed = {p.story.url for p in edition.picks}
    # The lead, More, and the Related lists (whose archive stories are not the window's).
    top = {p.story.url for p in [edition.lead, *edition.more, *edition.related] if p}
    out = {o.story.url for o in edition.left_out}  # in Most Read, say, but not above
    dropped = set(overrides.dropped)
    return EditorView(
        edition=edition,
        others=[
            s
            for s in stories
            if s.url not in top and s.url not in dropped and (s.url in out or s.url not in placed)
        ],
        dropped=[s for s in stories if s.url in dropped],
        overrides=overrides,
        events=store.editions.edition_events(name),
        has_send=store.sends.get_send(name) is not None,
    )
