"""Campaign tags: UTM parameters on the email's story links, so the newsroom's analytics
can tell digest readers from everyone else.

Set per newsroom in `[campaign]` (off while `utm_source` is empty):
`utm_source` as set, `utm_medium` (default `email`), `utm_campaign` with the edition's
date appended (`digest-2025-12-05`), and `utm_content` naming the slot the link is in
(`lead`, `more-3`, `most_read-1`, `related-1`), so a report shows which place in the email was read.

Only story links are tagged, at render time, on the copy being rendered: the story's
canonical URL stays as it is in the store (collect strips tracking parameters, and the
ranking and Most Read match page views on it), and the unsubscribe, "View in browser"
and website links are never tagged (they are not content the newsroom measures, and an
unsubscribe link must stay exactly what was signed).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode, urlsplit, urlunsplit

from digest.config import Campaign
from digest.models import Edition, Pick


def tagged(url: str, tags: dict[str, str]) -> str:
    """`url` with the tags appended to its query; any utm_* it had are replaced, the rest
    of the query is kept byte for byte."""
    parts = urlsplit(url)
    kept = [pair for pair in parts.query.split("&") if pair and not pair.lower().startswith("utm_")]
    query = "&".join([*kept, urlencode(tags)])
    return urlunsplit(parts._replace(query=query))


def slot_tags(settings: Campaign, edition: str, slot: str, position: int) -> dict[str, str]:
    """The tags of a story link in this place of the edition; none while tags are off.
    (Also what a first-party click link redirects with: digest.clicks.)"""
    if not settings.utm_source:
        return {}
    return {
        "utm_source": settings.utm_source,
        "utm_medium": settings.utm_medium,
        "utm_campaign": f"{settings.utm_campaign}-{edition}",
        "utm_content": "lead" if slot == "lead" else f"{slot}-{position}",
    }


def _tag_pick(pick: Pick, settings: Campaign, edition: str) -> Pick:
    tags = slot_tags(settings, edition, pick.slot, pick.position)
    return replace(pick, story=replace(pick.story, url=tagged(pick.story.url, tags)))


def tag_edition(edition: Edition, settings: Campaign) -> Edition:
    """The edition with its story links tagged, or as it is when tags are off."""
    if not settings.utm_source:
        return edition
    return replace(
        edition,
        lead=_tag_pick(edition.lead, settings, edition.name) if edition.lead else None,
        more=[_tag_pick(p, settings, edition.name) for p in edition.more],
        most_read=[_tag_pick(p, settings, edition.name) for p in edition.most_read],
        related=[_tag_pick(p, settings, edition.name) for p in edition.related],
    )
