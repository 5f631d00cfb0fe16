"""Clicks on an edition's story links: which place in the email a click was on, and the
newsroom's own click links for mail that no provider tracks (SMTP, the outbox).

Where a click lands. A provider's click event (SendGrid's `click`) carries the URL as
mailed. With campaign tags on, its `utm_content` names the place ("lead", "more-3",
"most_read-1", "related-1": digest.campaign), which is exact even when one story is in
two places; otherwise the URL, without its utm_* tags, is matched to the edition's
picks, the lead first, then More, Related and Most Read.

First-party click links (`[web] click_tracking = true`). Every story link in the email
goes through `[web] base_url/r/<token>`; the web app records the click and answers 302
to the story. The token names the edition, the place and the story, signed the way
the unsubscribe tokens are (keyed BLAKE2b under DIGEST_SECRET_KEY, its own purpose):
`2025-12-05.more.3.42.<signature>`. The story's address is not in the token but read
from the store by its id, so a token, forged or not, can only ever send a reader to a
story the newsroom collected (never an open redirect). The token names no reader:
a click is counted as a click. With `click_tracking_per_reader = true` each reader's
copy gets a second part, their address sealed (AES-SIV, RFC 5297, under a key derived
from the same secret, bound to the edition): `/r/<token>/<reader>`. Sealed rather than
signed because readers share links, and a link passed on must not carry the address;
deterministic, so it is one substitution value per reader, like the unsubscribe link.
There is no open pixel (docs/reports.md says why).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from digest.models import Edition, Pick
from digest.tokens import inert_url

#: The places a story link can have in an edition (models.Slot).
SLOTS = ("lead", "more", "related", "most_read")
#: Domain separation: a digest made for a click link is good for nothing else.
_PURPOSE = b"click-link"
_READER_PURPOSE = b"click-reader"
_LINK = re.compile(
    r"(?P<edition>[0-9]{4}-[0-9]{2}-[0-9]{2})\.(?P<slot>lead|more|related|most_read)\."
    r"(?P<position>[0-9]{1,4})\.(?P<story>[1-9][0-9]{0,11})\.(?P<signature>[A-Za-z0-9_-]{22})"
)
_READER = re.compile(r"[A-Za-z0-9_-]{24,600}")


@dataclass(frozen=True)
class Place:
    """Where a link stands in an edition: its slot, its position there, its story."""

    slot: str
    position: int
    story_id: int


class Places:
    """An edition's picks, for finding the place of a clicked URL."""

    def __init__(self, picks: Iterable[tuple[str, int, int, str]]) -> None:
        # (slot, position, story id, URL), the lead first (store.events.pick_places).
        self._by_place: dict[tuple[str, int], Place] = {}
        self._by_url: dict[str, Place] = {}
        for slot, position, story_id, url in picks:
            place = Place(slot, position, story_id)
            self._by_place[(slot, 1 if slot == "lead" else position)] = place
            for spelling in (url, inert_url(url)):
                self._by_url.setdefault(_url_key(spelling), place)

    def place_of(self, url: str) -> Place | None:
        """The place of a clicked URL in the edition, or None (a link that is no story's:
        the website, View in browser)."""
        content = dict(parse_qsl(urlsplit(url).query)).get("utm_content", "")
        slot, _, number = content.rpartition("-")
        if content == "lead":
            slot, number = "lead", "1"
        if slot in SLOTS and number.isdigit():
            found = self._by_place.get((slot, int(number)))
            if found is not None:
                return found
        return self._by_url.get(_url_key(url))


def _url_key(url: str) -> str:
    """A URL as clicked and as stored compare equal: no utm_* tags, no fragment, the
    scheme and host in lower case."""
    parts = urlsplit(url.strip())
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and not pair.lower().startswith("utm_")
    )
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", query, ""))


# -- the first-party click links --------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes of a base64url text, only in the spelling _b64 writes (one token, one
    spelling), else ValueError."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


def _mac_key(secret: bytes) -> bytes:
    # BLAKE2b takes a key of at most 64 bytes; a longer secret is hashed down to 64.
    return secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()


def _signature(secret: bytes, text: str) -> str:
    mac = hashlib.blake2b(text.encode(), key=_mac_key(secret), digest_size=16, person=_PURPOSE)
    return _b64(mac.digest())


def link_token(secret: bytes, edition: str, place: Place) -> str:
    """The signed token of one story link of an edition (no reader in it)."""
    text = f"{edition}.{place.slot}.{place.position}.{place.story_id}"
    return f"{text}.{_signature(secret, text)}"


@dataclass(frozen=True)
class Link:
    """What a valid click token names."""

    edition: str
    place: Place


def open_link(secret: bytes, token: str) -> Link | None:
    """What a token names, or None for one this secret did not sign (forged, cut, changed)."""
    match = _LINK.fullmatch(token)
    if match is None:
        return None
    text = token.rpartition(".")[0]
    if not hmac.compare_digest(_signature(secret, text).encode(), match["signature"].encode()):
        return None
    place = Place(match["slot"], int(match["position"]), int(match["story"]))
    return Link(match["edition"], place)


class ReaderSeal:
    """Seals a reader's address for their click links, and opens it again (AES-SIV)."""

    def __init__(self, secret: bytes) -> None:
        key = hashlib.blake2b(secret, digest_size=64, person=_READER_PURPOSE).digest()
        self._aead = AESSIV(key)

    def seal(self, edition: str, email: str) -> str:
        return _b64(self._aead.encrypt(email.lower().encode(), [edition.encode()]))

    def open(self, edition: str, sealed: str) -> str | None:
        """The address sealed for this edition, or None (tampered, another edition's)."""
        if _READER.fullmatch(sealed) is None:
            return None
        try:
            return self._aead.decrypt(_unb64(sealed), [edition.encode()]).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError, binascii.Error):
            return None


def tracked_edition(edition: Edition, base_url: str, secret: bytes, reader: str = "") -> Edition:
    """The edition with each story link going through the newsroom's click link:
    `base_url/r/<token>`, followed by `/<reader>` when `reader` (a substitution token)
    is given. A story not in the store (no id) keeps its own link."""

    def through(pick: Pick) -> Pick:
        if pick.story.id is None:
            return pick
        place = Place(pick.slot, 1 if pick.slot == "lead" else pick.position, pick.story.id)
        url = f"{base_url}/r/{link_token(secret, edition.name, place)}"
        return replace(pick, story=replace(pick.story, url=f"{url}/{reader}" if reader else url))

    return replace(
        edition,
        lead=through(edition.lead) if edition.lead else None,
        more=[through(p) for p in edition.more],
        most_read=[through(p) for p in edition.most_read],
        related=[through(p) for p in edition.related],
    )


def redirect_target(story_url: str, tags: Mapping[str, str]) -> str:
    """Where a click goes: the story's own address, with the campaign's tags when on."""
    if not tags:
        return story_url
    from digest.campaign import tagged

    return tagged(story_url, dict(tags))
