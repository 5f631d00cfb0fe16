"""digest.toml's [subject_tests] table: how big a subject test's group is, and how long
it waits for clicks before choosing.

Read by config.load (which keeps KNOWN_KEYS and the file's other tables); kept apart
only because config.py is near the house's 600-line limit. digest/send/subjects.py
runs the test; docs/sending.md says what each setting does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.errors import ConfigError


@dataclass(frozen=True)
class SubjectTestSettings:
    #: The share of the list that gets the test, split equally between the subjects;
    #: the rest get the winner.
    share: float = 0.2
    #: Seconds from the test's last batch to the choice: clicks come in over the first
    #: hour or so (docs/sending.md).
    wait_seconds: float = 3600.0


def subject_test_settings(
    table: dict[str, Any], path: Path, get: Callable[..., Any]
) -> SubjectTestSettings:
    """The [subject_tests] table, checked; `get` is config's typed reader (config._get)."""
    share = get(table, "share", float, path, "subject_tests", 0.2)
    wait = get(table, "wait_seconds", float, path, "subject_tests", 3600.0)
    if not 0 < share < 1:
        raise ConfigError(
            f"{path}: [subject_tests] share must be more than 0 and less than 1 "
            f"(0.2 = a fifth of the list), not {share}"
        )
    if not 0 <= wait <= 86_400:
        raise ConfigError(
            f"{path}: [subject_tests] wait_seconds must be 0 to 86400 (a day), not {wait}"
        )
    return SubjectTestSettings(share=share, wait_seconds=wait)
