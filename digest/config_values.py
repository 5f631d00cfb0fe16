"""How one value of digest.toml or the environment is read: its type, its bounds, and
the one line that says what is wrong with it and where.

`digest.config` builds the settings from these; each takes the file's path and the
table's name so that its error names them (`digest.toml: [edition] more_count must be
a whole number, not 'eight'`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from digest.errors import ConfigError


def suggestion(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def section(raw: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def get(table: dict[str, Any], key: str, kind: type, path: Path, where: str, default: Any) -> Any:
    if key not in table:
        if default is REQUIRED:
            raise ConfigError(f"{path}: [{where}] {key} is required")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: [{where}] {key} must be {KIND_NAMES[kind]}, not {value!r}")
    return value


REQUIRED = object()
KIND_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def env_float(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number of seconds") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative")
    return number


def env_port(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ConfigError(f"{name}={value!r} is not a port number (1 to 65535)")
    return int(value)


#: A CSS hex colour: the one form every mail client takes, and nothing that can close
#: the declaration it is copied into (`red;} body{display:none`).
HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

#: The pictures a mail client shows, by their first bytes.
_PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def is_picture_file(path: Path) -> bool:
    """Is this a PNG, JPEG, GIF or WebP file (by its first bytes, not its name)?"""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head.startswith(_PICTURE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def logo(base: Path, value: str, path: Path) -> str:
    """The logo as an absolute http(s) URL, or a local picture as a file:// URL that the
    renderer publishes under [web] base_url (digest.media); anything else is refused."""
    if not value:
        return ""
    if "://" in value:
        if not value.lower().startswith(("https://", "http://")):
            raise ConfigError(
                f"{path}: [newsroom] logo_url {value[:80]!r} must be an http(s) URL "
                "or a picture file beside digest.toml"
            )
        return value
    local = resolve(base, value)
    if not local.is_file():
        raise ConfigError(f"{path}: [newsroom] logo_url: no such file {str(local)!r}")
    if not is_picture_file(local):
        raise ConfigError(
            f"{path}: [newsroom] logo_url {str(local)!r} is not a PNG, JPEG, GIF or WebP picture"
        )
    return local.resolve().as_uri()


def positive(
    table: dict[str, Any], key: str, kind: type, path: Path, where: str, default: Any
) -> Any:
    value = get(table, key, kind, path, where, default)
    if value <= 0:
        raise ConfigError(f"{path}: [{where}] {key} must be more than 0, not {value!r}")
    return value


def str_list(table: dict[str, Any], key: str, path: Path, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [{where}] {key} must be a list of strings")
    return tuple(value)


def resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate)


def resolve_source(base: Path, value: str) -> str:
    if "://" in value:
        return value
    return str(resolve(base, value))
