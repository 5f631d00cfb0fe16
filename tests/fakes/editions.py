"""An edition made of given stories, for render tests that bring their own words."""

from __future__ import annotations

from datetime import UTC, datetime

from digest.models import Edition, Pick, Story

#: When the edition's stories were published and it is sent: 2025-12-05 15:00 UTC.
T = datetime(2025, 12, 5, 15, tzinfo=UTC)


def edition_of(stories: list[Story], preheader: str | None = None) -> Edition:
    """The first story leads, the rest are More in News, and all of them are Most Read."""
    lead, *more = stories
    return Edition(
        name="2025-12-05",
        send_at=T,
        window_start=T,
        window_end=T,
        subject=lead.title,
        preheader=lead.dek if preheader is None else preheader,
        lead=Pick(lead, "lead", 1, 0.9),
        more=[Pick(s, "more", i, 0.5) for i, s in enumerate(more, 1)],
        most_read=[Pick(s, "most_read", i, 0.1, views=5) for i, s in enumerate(stories, 1)],
    )
