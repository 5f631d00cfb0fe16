"""Bylines: the names a source gives for a story's authors, cleaned and joined.

Every collector (feeds, CMS posts, article pages) stores its byline through here, so
the edition reads the same whatever the source wrote:

- a leading "By" ("BY", "by:", and the French and Spanish "Par", "Por") is dropped:
  the template writes the word in the newsroom's language;
- e-mail addresses are dropped; RSS's "jane@example.org (Jane Doe)" and
  "Jane Doe <jane@example.org>" keep the name, a bare address is no name;
- a content system's account names are dropped: "admin", "administrator", "webmaster",
  "editor", "staff", "user", "username", "guest", "root", "unknown", and web addresses;
- a name written all in capitals with two words or more is titled ("TOM KRISHER" →
  "Tom Krisher"; "O'BRIEN" → "O'Brien"); one word is left alone ("AFP", "AP");
- one string naming several people ("A; B", and "Ann Lee and Bo Chan", "Ann Lee & Bo
  Chan" where each part has two words or more) is split; "Mac & i" is one name, and a
  comma is no separator ("Jane Doe, Staff Writer" is one byline);
- each name once (case-insensitively), in the source's order, joined as a newsroom
  writes them: "A and B", "A, B and C" (English, no serial comma, as AP style has
  it); in another locale with its own word and commas (CLDR, through Babel).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from digest.collect.bodytext import plain_text

# "By", "By:", "BY", "by" at the start, and the same word in French and Spanish.
_LEADING_BY = re.compile(r"^(?:by|par|por)\b\s*:?\s*", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# RSS 2.0's <author> is "address (Name)"; RFC 5322's is "Name <address>".
_ADDRESS_THEN_NAME = re.compile(r"^\s*[\w.+-]+@[\w.-]+\s*\((?P<name>[^()]+)\)\s*$")
_NAME_THEN_ADDRESS = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<[^<>@]+@[^<>]+>\s*$")
_LIST = re.compile(r"\s*;\s*")
_AND = re.compile(r"\s+(?:and|&)\s+", re.IGNORECASE)
# A CMS's account names, not a person's: what WordPress and kin print for a post
# nobody signed.
_ACCOUNTS = frozenset(
    "admin administrator webmaster editor staff user guest root unknown author "  # noqa: SIM905
    "null none anonymous username".split()
)
_EDGES = " \t,;:|-–—·•"


def clean_names(raw: Iterable[str]) -> list[str]:
    """The people `raw` names, cleaned as the module says."""
    seen: dict[str, str] = {}
    for value in raw:
        for name in _split(value):
            key = " ".join(name.split()).casefold()
            if key and key not in seen:
                seen[key] = name
    return list(seen.values())


def join_names(names: list[str], locale: str = "en_US") -> str:
    """ "A", "A and B", "A, B and C" (English); the locale's own list pattern otherwise."""
    if len(names) <= 1:
        return "".join(names)
    if locale.split("_")[0].lower() == "en":
        return f"{', '.join(names[:-1])} and {names[-1]}"
    from babel.lists import format_list

    try:
        return format_list(names, locale=locale)
    except (ValueError, LookupError):  # a locale Babel has no list pattern for
        return ", ".join(names)


def clean_byline(raw: str, locale: str = "en_US") -> str:
    """One source byline, cleaned and joined again."""
    return join_names(clean_names([raw]), locale)


def _split(value: str) -> list[str]:
    text = plain_text(value)
    whole = _ADDRESS_THEN_NAME.match(text) or _NAME_THEN_ADDRESS.match(text)
    if whole:
        text = whole["name"]
    text = _LEADING_BY.sub("", text.strip(_EDGES))
    names = []
    for part in (p for listed in _LIST.split(text) for p in _people(listed)):
        part = _LEADING_BY.sub("", _EMAIL.sub(" ", part).strip(_EDGES)).strip(_EDGES)
        part = " ".join(part.split())
        if not part or part.casefold() in _ACCOUNTS or "://" in part or part.startswith("www."):
            continue
        names.append(_titled(part))
    return names


def _people(text: str) -> list[str]:
    """ "A B and C D" → two people; "Mac & i", "Smith and Wesson" stay one name: every
    part must have two words or more to be a person's name."""
    parts = _AND.split(text)
    if len(parts) > 1 and all(len(part.split()) >= 2 for part in parts):
        return parts
    return [text]


def _titled(name: str) -> str:
    """ "TOM KRISHER" → "Tom Krisher"; a name with any lower-case letter, or one word, as is."""
    if len(name.split()) < 2 or any(c.islower() for c in name):
        return name
    if not any(c.isupper() for c in name):
        return name  # scripts without case (Chinese, Hindi, ...)
    return name.title()
