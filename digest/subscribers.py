"""Subscribers: the list as a newsroom keeps it in a spreadsheet, validated; suppressions;
signed unsubscribe tokens.

Reading streams row by row, so a list of a million rows never sits in memory.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from digest.errors import InputError
from digest.models import LEFT_STATUSES, Subscriber
from digest.store import Store

log = logging.getLogger("digest.subscribers")

STATUSES = frozenset({"active"}) | LEFT_STATUSES
_KNOWN_COLUMNS = {"email", "name", "sections", "status"}
# A cell starting with one of these is run as a formula by Excel, LibreOffice and
# Google Sheets (OWASP "CSV injection"); exports prefix it with a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0
    updated: int = 0
    kept_out: int = 0  # asked to be active, but the address had left: not resubscribed
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


def normalise_email(raw: str) -> str:
    """The address as stored: syntax-checked (no DNS look-up) and lower-cased."""
    result = validate_email(raw.strip(), check_deliverability=False)
    return result.normalized.lower()


def read_csv(path: Path, report: ImportReport) -> Iterator[Subscriber]:
    """Valid rows of a subscribers CSV, first occurrence of each address only.

    A bad row is reported with its line number and skipped; the rest goes on.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    seen: set[bytes] = set()
    with handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
            raise InputError(f"{path}: line 1: no 'email' column; the header must name one")
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
        for row in reader:
            line = reader.line_num
            report.read += 1
            raw = (row.get("email") or "").strip()
            try:
                email = normalise_email(raw)
            except EmailNotValidError as exc:
                message = (
                    f"{path}: line {line}: {raw!r} is not an e-mail address ({exc}); row skipped"
                )
                report.rejected.append(message)
                log.warning("%s", message)
                continue
            # 8-byte digests keep the duplicate check small for a million rows.
            key = hashlib.blake2b(email.encode(), digest_size=8).digest()
            if key in seen:
                report.duplicates += 1
                log.info("%s: line %d: %s appears again; first row kept", path, line, email)
                continue
            seen.add(key)
            status = (row.get("status") or "active").strip().lower() or "active"
            if status not in STATUSES:
                message = (
                    f"{path}: line {line}: status {status!r} is not one of "
                    f"{', '.join(sorted(STATUSES))}; row skipped"
                )
                report.rejected.append(message)
                log.warning("%s", message)
                continue
            sections = tuple(
                s.strip()
                for s in (row.get("sections") or "").replace(",", ";").split(";")
                if s.strip()
            )
            attributes = {
                k: v
                for k, v in row.items()
                if k and k not in _KNOWN_COLUMNS and v not in (None, "")
            }
            yield Subscriber(
                email=email,
                name=(row.get("name") or "").strip(),
                sections=sections,
                status=status,
                attributes=attributes,
            )


def import_csv(store: Store, path: Path, chunk: int = 5000) -> ImportReport:
    """Add or update subscribers from a CSV. Never reactivates anyone who left."""
    report = ImportReport()
    pending: list[Subscriber] = []
    for subscriber in read_csv(path, report):
        pending.append(subscriber)
        if len(pending) >= chunk:
            _flush(store, pending, report)
            pending = []
    _flush(store, pending, report)
    return report


def _flush(store: Store, pending: list[Subscriber], report: ImportReport) -> None:
    added, updated, kept_out = store.upsert_subscribers(pending)
    report.added += added
    report.updated += updated
    report.kept_out += kept_out


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_csv(store: Store, path: Path) -> int:
    """Write every subscriber to a CSV, safe to open in a spreadsheet."""
    count = 0
    extra: list[str] = []
    for subscriber in store.iter_subscribers():
        for key in subscriber.attributes:
            if key not in extra:
                extra.append(key)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "sections", "status", *extra])
        for s in store.iter_subscribers():
            writer.writerow(
                [_cell(v) for v in (s.email, s.name, ";".join(s.sections), s.status)]
                + [_cell(s.attributes.get(k, "")) for k in extra]
            )
            count += 1
    return count


# -- signed unsubscribe tokens ---------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_token(secret: bytes, email: str) -> str:
    """`<address>.<signature>`, URL-safe. Only we can make one; anyone holding it may use it."""
    address = email.lower().encode()
    signature = hmac.new(secret, b"unsubscribe:" + address, hashlib.sha256).digest()[:16]
    return f"{_b64(address)}.{_b64(signature)}"


def verify_token(secret: bytes, token: str) -> str | None:
    """The address a token was made for, or None if it was not made with this secret."""
    try:
        encoded, signature = token.split(".", 1)
        address = _unb64(encoded)
        given = _unb64(signature)
    except (ValueError, TypeError):
        return None
    expected = hmac.new(secret, b"unsubscribe:" + address, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(given, expected):
        return None
    return address.decode()
