"""Subscribers: the list as a newsroom keeps it in a spreadsheet, validated; suppressions;
signed unsubscribe tokens.

Reading streams row by row, so a list of a million rows never sits in memory.
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from digest.errors import InputError
from digest.models import LEFT_STATUSES
from digest.store import Store, now
from digest.store.tables import ImportRow, _attributes_json

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
    bytes_read: int = 0  # how far into the file the reading is, for a progress bar


# email-validator takes about 45 µs an address (it checks Unicode and IDNA rules),
# which alone would hold an import near 20,000 rows/s. Almost every address on a
# list is plain ASCII: a dot-atom local part (RFC 5322 3.2.3) and a domain of
# letter-digit-hyphen labels (RFC 1035 2.3.1) under an alphabetic top-level domain.
# For those, email-validator's answer is known: valid, and normalised to itself. The
# pattern accepts only such addresses and never rejects one; anything else goes to
# email-validator, so what is rejected, and the reason given, is exactly its answer
# (tests/test_subscribers_io.py checks the two agree).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_PLAIN_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
#: Names email-validator refuses with everything under them (special-use domains,
#: RFC 6761 and others). Today all are top-level names, which one set look-up checks.
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_TOP_LEVEL = frozenset(d for d in _SPECIAL_USE if "." not in d)
_SPECIAL_DEEPER = tuple("." + d for d in _SPECIAL_USE if "." in d)


def _plainly_valid(address: str) -> bool:
    """A dot-atom, one "@", and a plain domain (the pattern above), at most 254
    characters with a local part of at most 64. A list holds a few thousand domains for a
    million readers, so each domain's verdict is worked out once (_plain_domain)."""
    local, at, domain = address.partition("@")
    if not at or len(address) > 254 or len(local) > 64 or not _plain_domain(domain):
        return False
    return _PLAIN_LOCAL.fullmatch(local) is not None


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> bool:
    if _PLAIN_DOMAIN.fullmatch(domain) is None:
        return False
    domain = domain.lower()
    # "--" would need the IDNA checks (Punycode "xn--", RFC 5891 4.2.3.1).
    if "--" in domain or domain.rpartition(".")[2] in _SPECIAL_TOP_LEVEL:
        return False
    return not (_SPECIAL_DEEPER and domain.endswith(_SPECIAL_DEEPER))


def normalise_email(raw: str) -> str:
    """The address as stored, compared and sent: syntax-checked (no DNS look-up),
    lower-cased, with its domain as A-labels (IDNA 2008, RFC 5891).

    `olivia@bücher.example` and `olivia@xn--bcher-kva.example` are one mailbox, so
    they are one reader: both are stored as the second, which is also the only
    form an RFC 5322 header or a relay without SMTPUTF8 can carry. A non-ASCII
    local part (RFC 6531) has no ASCII form and is kept in UTF-8 (NFC, as
    email-validator normalises it); only SMTPUTF8 can deliver it (see
    needs_smtputf8). People read addresses with the U-label: display_email.

    Raises email_validator.EmailNotValidError for anything that is not an address.
    """
    address = raw.strip()
    if _plainly_valid(address):
        return address.lower()
    checked = validate_email(address, check_deliverability=False)
    if checked.ascii_email:
        return checked.ascii_email.lower()
    return f"{checked.local_part}@{checked.ascii_domain}".lower()


def stored_form(email: str) -> str:
    """normalise_email, or the address lower-cased when it does not parse (an
    address from an old record or a provider's event): for look-ups, never raises."""
    try:
        return normalise_email(email)
    except EmailNotValidError:
        return email.strip().lower()


def a_label_address(email: str) -> str:
    """The address with its domain in A-labels, for a header or an envelope.

    Stored addresses have that form already (normalise_email); this also covers
    one written by hand (a sender in digest.toml, a snapshot taken before the
    0005 migration). An address whose domain does not convert is returned as it
    is, for the relay to refuse.
    """
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return email


def display_email(email: str) -> str:
    """The address as people read it: the domain's A-labels shown as U-labels."""
    local, at, domain = email.rpartition("@")
    if not at or "xn--" not in domain:
        return email
    try:
        return f"{local}@{idna.decode(domain)}"
    except idna.IDNAError:
        return email


def needs_smtputf8(email: str) -> bool:
    """A non-ASCII local part: deliverable only over SMTPUTF8 (RFC 6531 section 3.2),
    since it has no ASCII form (a domain has: its A-labels)."""
    return not email.rpartition("@")[0].isascii()


def parse_sections(raw: str) -> tuple[str, ...]:
    """ "News; politics,News" -> ("News", "politics"): split on ; or ",", one of each
    (case aside), sorted. One spelling per preference makes readers who chose the
    same sections one group at send time, so one copy is rendered for all of them."""
    chosen: dict[str, str] = {}
    for part in raw.replace(",", ";").split(";"):
        name = part.strip()
        if name:
            chosen.setdefault(name.lower(), name)
    return tuple(chosen[key] for key in sorted(chosen))


def read_csv(path: Path, report: ImportReport) -> Iterator[tuple[int, ImportRow]]:
    """Valid rows of a subscribers CSV, with their line numbers, streamed, each ready to
    write: (email, name, sections, status, attributes JSON).

    A bad row is reported with its line number and skipped; the rest goes on. Read as
    csv.DictReader would (a header lower-cased; a later column of the same name wins;
    blank lines skipped; missing cells empty), but with csv.reader and the column
    positions worked out once, and no object made per row: a million rows are read in
    seconds. A sections cell or a row's other columns that come again (most do) are
    parsed and encoded once.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = [f.strip().lower() for f in next(reader, [])]
        if "email" not in header:
            raise InputError(f"{path}: line 1: no 'email' column; the header must name one")
        column = {name: i for i, name in enumerate(header)}  # the last of a name wins
        at_email, at_name = column["email"], column.get("name")
        at_sections, at_status = column.get("sections"), column.get("status")
        extra = [(k, i) for k, i in column.items() if k and k not in _KNOWN_COLUMNS]
        extra_names = tuple(k for k, _ in extra)
        # One cell, or a tuple of them, from a row: a key for attributes_of.
        extra_values = itemgetter(*[i for _, i in extra]) if extra else None
        width = len(header)
        padding = [""] * width
        sections_of: dict[str, str] = {}
        attributes_of: dict[Any, str] = {}
        binary = handle.buffer
        for row in reader:
            if not row:
                continue
            report.read += 1
            if report.read % 1000 == 0:
                report.bytes_read = binary.tell()
            if len(row) < width:
                row += padding[len(row) :]
            raw = row[at_email].strip()
            if _plainly_valid(raw):
                email = raw.lower()
            else:
                try:
                    email = normalise_email(raw)
                except EmailNotValidError as exc:
                    line = reader.line_num
                    _reject(
                        report, f"{path}: line {line}: {raw!r} is not an e-mail address ({exc})"
                    )
                    continue
            status = "active" if at_status is None else row[at_status].strip().lower()
            if status != "active":
                if not status:
                    status = "active"
                elif status not in STATUSES:
                    _reject(
                        report,
                        f"{path}: line {reader.line_num}: status {status!r} is not one of "
                        f"{', '.join(sorted(STATUSES))}",
                    )
                    continue
            cell = "" if at_sections is None else row[at_sections]
            sections = sections_of.get(cell)
            if sections is None:
                if len(sections_of) >= 4096:
                    sections_of.clear()
                sections = sections_of[cell] = ";".join(parse_sections(cell))
            attributes = "{}"
            if extra_values is not None:
                values = extra_values(row)
                attributes = attributes_of.get(values)  # type: ignore[assignment]
                if attributes is None:
                    if len(attributes_of) >= 4096:
                        attributes_of.clear()
                    cells = values if len(extra_names) > 1 else (values,)
                    chosen = {k: v for k, v in zip(extra_names, cells, strict=True) if v}
                    attributes = attributes_of[values] = (
                        _attributes_json(chosen) if chosen else "{}"
                    )
            name = "" if at_name is None else row[at_name].strip()
            yield reader.line_num, (email, name, sections, status, attributes)


def _reject(report: ImportReport, problem: str) -> None:
    message = f"{problem}; row skipped"
    report.rejected.append(message)
    log.warning("%s", message)


def import_csv(
    store: Store,
    path: Path,
    chunk: int = 5000,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Add or update subscribers from a CSV. Never reactivates anyone who left.

    The first row for an address wins; later ones are counted as duplicates. The
    file is read as a stream and written in chunks, and repeats are found through
    the store (see store.subscribers.import_rows), so memory does not grow with the file.
    on_progress: called after each chunk is written, with the report so far.
    """
    report = ImportReport()
    stamp = now()
    pending: dict[str, tuple[int, ImportRow]] = {}
    for line, row in read_csv(path, report):
        email = row[0]
        if email in pending:
            _duplicate(report, path, line, email)
            continue
        pending[email] = (line, row)
        if len(pending) >= chunk:
            _flush(store, pending, report, stamp, path)
            pending = {}
            if on_progress:
                on_progress(report)
    _flush(store, pending, report, stamp, path)
    return report


def _duplicate(report: ImportReport, path: Path, line: int, email: str) -> None:
    report.duplicates += 1
    log.info("%s: line %d: %s appears again; first row kept", path, line, email)


def _flush(
    store: Store,
    pending: dict[str, tuple[int, ImportRow]],
    report: ImportReport,
    stamp: datetime,
    path: Path,
) -> None:
    result = store.subscribers.import_rows([row for _line, row in pending.values()], stamp)
    report.added += result.added
    report.updated += result.updated
    report.kept_out += result.kept_out
    for email in result.repeated:
        _duplicate(report, path, pending[email][0], email)


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_csv(store: Store, path: Path) -> int:
    """Write every subscriber to a CSV, safe to open in a spreadsheet."""
    count = 0
    extra: list[str] = []
    for subscriber in store.subscribers.iter_subscribers():
        for key in subscriber.attributes:
            if key not in extra:
                extra.append(key)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "sections", "status", *extra])
        for s in store.subscribers.iter_subscribers():
            writer.writerow(
                [_cell(v) for v in (s.email, s.name, ";".join(s.sections), s.status)]
                + [_cell(s.attributes.get(k, "")) for k in extra]
            )
            count += 1
    return count


# -- signed unsubscribe tokens ---------------------------------------------------


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5), via binascii: it runs per recipient."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


#: The base64url alphabet (RFC 4648 section 5), nothing else: no "+/", no padding.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """The bytes of a base64url text, or ValueError unless it is their one canonical spelling.

    base64 decoders forgive: padding or none, "+/" for "-_", and set trailing bits
    in the last character (RFC 4648 section 3.5: "dfA" and "dfB" both decode to
    the same two bytes). A token must be exactly what _b64 wrote, so one token has
    one spelling: encoding the bytes again must give the very text back.
    """
    if _BASE64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


#: Domain separation: a digest made for unsubscribing is good for nothing else.
_PURPOSE = b"unsubscribe"


def _mac_key(secret: bytes) -> bytes:
    # BLAKE2b takes a key of at most 64 bytes; a longer secret is hashed down to 64.
    return secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()


@functools.lru_cache(maxsize=8)
def token_signer(secret: bytes) -> Callable[[str], str]:
    """`unsubscribe_token` with the key prepared once, for signing a whole send.

    The signature is keyed BLAKE2b (RFC 7693 section 2.9; Python's hashlib docs
    offer keyed BLAKE2 as "a faster and simpler replacement for HMAC"), 128 bits.
    A send signs every recipient: copying a keyed state costs about 0.7 µs where
    HMAC-SHA256 cost 2.5 to 3.5 µs here, a fifth of building a SendGrid request.
    """
    keyed = hashlib.blake2b(key=_mac_key(secret), digest_size=16, person=_PURPOSE)

    def sign(email: str) -> str:
        address = email.lower().encode()
        mac = keyed.copy()
        mac.update(address)
        return f"{_b64(address)}.{_b64(mac.digest())}"

    return sign


def _signature(secret: bytes, address: bytes) -> bytes:
    return hashlib.blake2b(address, key=_mac_key(secret), digest_size=16, person=_PURPOSE).digest()


def unsubscribe_token(secret: bytes, email: str) -> str:
    """`<address>.<signature>`, URL-safe. Only we can make one; anyone holding it may use it."""
    return token_signer(secret)(email)


def verify_token(secret: bytes, token: str) -> str | None:
    """The address a token was made for, or None if it was not made with this secret.

    Only the spelling unsubscribe_token writes is accepted: both parts canonical
    base64url (see _unb64), one dot. The signature is compared as text, in
    constant time (hmac.compare_digest), against the one we would write, which
    checks its bytes and its spelling at once.
    """
    encoded, dot, signature = token.partition(".")
    if not dot or _BASE64URL.fullmatch(signature) is None:
        return None
    try:
        address = _unb64(encoded)
        text = address.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    expected = _b64(_signature(secret, address))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    return text


# -- leaving: the unsubscribe link and RFC 8058 one-click --------------------------


@dataclass(frozen=True)
class Unsubscribed:
    """The outcome of an unsubscribe request made with a valid token."""

    email: str
    reason: str  # why the address is suppressed now: unsubscribed, bounced or complained
    now: bool  # False: it had left before this request (a repeated click, a bounce)


def token_address(secret: bytes, token: str) -> str | None:
    """The address a token from an email was made for, as stored, or None for a broken
    or forged one.

    As stored: a token mailed before the 0005 migration carries a U-label domain
    (`olivia@bücher.example`); the reader is now `olivia@xn--bcher-kva.example`.
    """
    email = verify_token(secret, token)
    if email is None or "@" not in email:
        return None
    return stored_form(email)


def left_already(store: Store, email: str) -> str | None:
    """Why an address no longer gets the digest (its suppression reason), or None."""
    address = stored_form(email)
    return store.subscribers.suppressed([address]).get(address)


def unsubscribe(store: Store, email: str, source: str) -> Unsubscribed:
    """Suppress an address for good; asking again changes nothing.

    An address that left earlier keeps its first reason (store.subscribers.suppress): a reader
    who bounced and then clicks unsubscribe stays recorded as bounced.
    """
    return unsubscribe_all(store, [(email, source)])[0]


def unsubscribe_all(store: Store, requests: Sequence[tuple[str, str]]) -> list[Unsubscribed]:
    """unsubscribe() for many (email, source) requests in one transaction, as if one
    after the other: an address asked for twice left now only the first time.

    The web app's writer (digest/web/writer.py) writes the one-click requests that
    arrive together this way.
    """
    addresses = [stored_form(email) for email, _ in requests]
    added = store.subscribers.suppress_all(
        [
            (address, "unsubscribed", source)
            for address, (_, source) in zip(addresses, requests, strict=True)
        ]
    )
    # Why those not suppressed now had left (nearly always none: a first click).
    earlier = [address for address in dict.fromkeys(addresses) if address not in added]
    reasons = store.subscribers.suppressed(earlier) if earlier else {}
    results = []
    for address in addresses:
        now = address in added
        added.discard(address)  # a second request for it in this group: left already
        results.append(Unsubscribed(address, reasons.get(address) or "unsubscribed", now=now))
    return results


def masked(email: str) -> str:
    """`ja•••@example.com`: enough for a reader to know the address, not enough to harvest
    it from a forwarded link's page. The domain as people read it (its U-label)."""
    local, _, domain = display_email(email).rpartition("@")
    shown = 1 if len(local) <= 4 else 2
    return f"{local[:shown]}{'•' * 3}@{domain}"
