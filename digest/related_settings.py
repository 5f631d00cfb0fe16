"""digest.toml's [related] table: how many related stories, from how far back, how alike.

Read by config.load (which keeps KNOWN_KEYS and the file's other tables); kept apart
only because config.py is at the house's 600-line limit. digest/related.py and
docs/related.md say what each setting does to the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from digest.errors import ConfigError


@dataclass(frozen=True)
class RelatedSettings:
    count: int = 3  # related stories under a story at most; 0 = no "Related" list
    days: int = 30  # how far back the archive goes, before the edition's send time
    #: How alike a story must be to be shown (digest.related: 1 = the same words in the
    #: same measure). Chosen on the labelled set in docs/related.md.
    threshold: float = 0.05
    under_more: bool = False  # also a short list under each "More" story


def related_settings(table: dict[str, Any], path: Path, get: Callable[..., Any]) -> RelatedSettings:
    """The [related] table, checked; `get` is config's typed reader (config._get)."""
    defaults = RelatedSettings()
    values = {
        f.name: get(table, f.name, type(getattr(defaults, f.name)), path, "related",
                    getattr(defaults, f.name))
        for f in fields(RelatedSettings)
    }  # fmt: skip
    settings = RelatedSettings(**values)
    if not 0 <= settings.count <= 10:
        raise ConfigError(f"{path}: [related] count must be 0 to 10, not {settings.count}")
    if not 1 <= settings.days <= 3660:
        raise ConfigError(f"{path}: [related] days must be 1 to 3660, not {settings.days}")
    if not 0 < settings.threshold <= 1:
        raise ConfigError(
            f"{path}: [related] threshold must be more than 0 and at most 1, "
            f"not {settings.threshold}"
        )
    return settings
