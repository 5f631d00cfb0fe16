"""Subscriber import and export: the address check, repeats across chunks, never resubscribing,
and exports that a spreadsheet cannot run as formulas."""

from __future__ import annotations

import csv
import random
import string
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from digest.models import Subscriber
from digest.store import Store
from digest.subscribers import _plainly_valid, export_csv, import_csv, normalise_email

# Addresses near every edge of the quick pattern: it must accept only what
# email-validator accepts, and normalise them the same way.
EDGES = [
    "plain@example.com",
    "Mixed.Case@Example.COM",
    "o'brien+news@example.co.uk",
    "a!#$%&'*+/=?^_`{|}~-z@example.org",
    "x@a.b.c.d.example.museum",
    "dots..double@example.com",
    ".lead@example.com",
    "trail.@example.com",
    "no-at-sign.example.com",
    "two@@example.com",
    "a@b",
    "a@localhost",
    "a@example.local",
    "a@example.test",
    "a@example.invalid",
    "a@printer.arpa",
    "a@site.onion",
    "a@xn--bcher-kva.example",
    "a@xn--zz.example",
    "a@ab--cd.example",
    "a@-lead.example.com",
    "a@trail-.example.com",
    "a@example.123",
    "a@example.c0m",
    "a@[127.0.0.1]",
    '"quoted"@example.com',
    "Name <a@example.com>",
    "ünïcode@example.com",
    "a@bücher.example",
    " spaced @example.com",
    "a@exa mple.com",
    "postmaster@example.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["c" * 60] * 4) + ".com",
    "a@example.com.",
    "a@example..com",
]


def _reference(address: str) -> str | None:
    """What email-validator alone says, as normalise_email stores it: the domain in
    A-labels (its ascii_domain), the local part as it normalised it."""
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return f"{checked.local_part}@{checked.ascii_domain}".lower()


def _ours(address: str) -> str | None:
    try:
        return normalise_email(address)
    except EmailNotValidError:
        return None


@pytest.mark.parametrize("address", EDGES)
def test_the_quick_check_agrees_with_email_validator_at_the_edges(address: str) -> None:
    assert _ours(address) == _reference(address)
    if _plainly_valid(address.strip()):
        assert _reference(address) is not None  # never accepts what it would refuse


def test_the_quick_check_agrees_on_random_addresses() -> None:
    rng = random.Random(20251205)
    alphabet = string.ascii_letters + string.digits + ".-_+@!#'ü \"[]()<>,;:xn--"
    for _ in range(20_000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        domain = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        tld = rng.choice(["com", "org", "test", "local", "c0m", "x", "", "io"])
        address = f"{local}@{domain}.{tld}" if rng.random() < 0.9 else local
        assert _ours(address) == _reference(address), address


def test_a_rejection_says_the_same_as_email_validator() -> None:
    with pytest.raises(EmailNotValidError) as ours:
        normalise_email("bob@@example.com")
    with pytest.raises(EmailNotValidError) as theirs:
        validate_email("bob@@example.com", check_deliverability=False)
    assert str(ours.value) == str(theirs.value)


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["email", "name", "sections", "status", "city"], *rows])
    return path


def test_import_reports_bad_rows_by_line_and_keeps_the_first_of_repeats_across_chunks(
    store: Store, tmp_path: Path
) -> None:
    rows = [[f"reader{i}@example.org", f"Reader {i}", "", "active", "Juneau"] for i in range(12)]
    rows[4] = ["not an address", "Nobody", "", "active", ""]
    rows[9] = ["READER1@Example.org", "Second row for reader 1", "", "active", ""]  # chunk 3
    rows[10] = ["reader2@example.org", "Again, same chunk as ...", "", "active", ""]
    rows[11] = ["reader11@example.org", "Bad status", "", "maybe", ""]
    path = _write(tmp_path / "list.csv", rows)
    report = import_csv(store, path, chunk=4)
    assert (report.read, report.added, report.duplicates) == (12, 8, 2)
    assert [r.split(": ", 2)[1] for r in report.rejected] == ["line 6", "line 13"]
    assert "'not an address' is not an e-mail address" in report.rejected[0]
    names = {s.email: s.name for s in store.subscribers.iter_subscribers()}
    assert names["reader1@example.org"] == "Reader 1"  # the first row won
    assert names["reader2@example.org"] == "Reader 2"
    assert store.subscribers.iter_subscribers().__next__().attributes == {"city": "Juneau"}
    again = import_csv(store, path, chunk=4)  # a second import of the same file
    assert (again.added, again.updated, again.duplicates) == (0, 8, 2)


def test_an_import_never_resubscribes_anyone_who_left(store: Store, tmp_path: Path) -> None:
    store.subscribers.upsert_subscribers([Subscriber("gone@example.org")])
    store.subscribers.suppress("gone@example.org", "unsubscribed", source="link")
    store.subscribers.suppress("bounced@example.org", "bounced", source="webhook")
    path = _write(
        tmp_path / "list.csv",
        [
            ["Gone@Example.org", "Back again?", "", "active", ""],
            ["bounced@example.org", "Never here", "", "", ""],
            ["complained@example.org", "Marked", "", "complained", ""],
        ],
    )
    report = import_csv(store, path)
    assert report.kept_out == 2
    statuses = {s.email: s.status for s in store.subscribers.iter_subscribers()}
    assert statuses == {
        "gone@example.org": "unsubscribed",
        "bounced@example.org": "bounced",
        "complained@example.org": "complained",
    }
    assert list(store.subscribers.deliverable_recipients()) == []


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx"])
def test_export_defuses_spreadsheet_formulas(store: Store, tmp_path: Path, dangerous: str) -> None:
    store.subscribers.upsert_subscribers(
        [Subscriber("a@example.org", name=dangerous, attributes={"note": dangerous})]
    )
    path = tmp_path / "export.csv"
    assert export_csv(store, path) == 1
    with path.open(newline="", encoding="utf-8") as handle:
        (_header, row) = list(csv.reader(handle))
    assert row[1] == "'" + dangerous and row[4] == "'" + dangerous
    assert row[0] == "a@example.org"  # safe cells stay as they were


def test_a_long_import_reports_its_progress(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "sections"])
        for i in range(12_000):
            writer.writerow([f"reader{i:05d}@example.org", f"Reader {i}", "News"])
    seen: list[tuple[int, int]] = []
    report = import_csv(store, path, on_progress=lambda r: seen.append((r.read, r.bytes_read)))
    assert report.added == 12_000
    # After each chunk of 5,000 written: rows and bytes only go forward, within the file.
    assert [rows for rows, _ in seen] == [5_000, 10_000]
    assert 0 < seen[0][1] < seen[1][1] <= path.stat().st_size
