"""Internationalised addresses (issue 8, case 4): stored, compared and sent with A-label
domains, shown with U-labels; a non-ASCII local part only over SMTPUTF8, else refused.
Existing rows are converted by migration 0005."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fakes.newsroom import SECRET, copy_newsroom, drafted, letter
from fakes.relay import Relay, serving
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from sqlalchemy import text

from digest import config
from digest.models import Batch, Recipient, Subscriber
from digest.send import sendgrid_events
from digest.send.base import Letter
from digest.send.sendgrid import SendGridBackend
from digest.send.smtp import SMTPBackend
from digest.store import MIGRATIONS, Store, make_engine
from digest.subscribers import (
    import_csv,
    normalise_email,
    token_address,
    unsubscribe,
    unsubscribe_token,
)

U_LABEL, A_LABEL = "olivia@bücher.example", "olivia@xn--bcher-kva.example"


@pytest.fixture(scope="module")
def the_letter(tmp_path_factory: pytest.TempPathFactory) -> Letter:
    root = tmp_path_factory.mktemp("idn-newsroom")
    settings = config.load(copy_newsroom(root), env={"DIGEST_SECRET_KEY": SECRET})
    drafted(settings)
    return letter(settings)


def test_both_spellings_of_an_idn_are_one_reader_stored_with_its_a_label() -> None:
    from digest.subscribers import display_email, masked

    for spelling in (U_LABEL, A_LABEL, "Olivia@BÜCHER.Example", "OLIVIA@XN--BCHER-KVA.EXAMPLE"):
        assert normalise_email(spelling) == A_LABEL
    # A non-ASCII local part has no ASCII form: kept in UTF-8, its domain in A-labels.
    assert normalise_email("Jörg@Bücher.example") == "jörg@xn--bcher-kva.example"
    assert display_email(A_LABEL) == U_LABEL  # what people read
    assert masked(A_LABEL) == "ol•••@bücher.example"  # the unsubscribe pages
    assert display_email("ana@example.org") == "ana@example.org"


def test_import_suppressions_unsubscribe_and_events_all_compare_on_the_a_label(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"email,name\n{U_LABEL},Olivia\n{A_LABEL},Olivia again\n", encoding="utf-8")
    first = import_csv(store, path)
    assert (first.added, first.duplicates) == (1, 1)
    assert [s.email for s in store.subscribers.iter_subscribers()] == [A_LABEL]
    # A link mailed before the change carries the U-label; it unsubscribes the reader.
    old_token = unsubscribe_token(SECRET.encode(), U_LABEL)
    address = token_address(SECRET.encode(), old_token)
    assert address == A_LABEL
    assert unsubscribe(store, address, source="link").reason == "unsubscribed"
    assert store.subscribers.suppressed([A_LABEL]) == {A_LABEL: "unsubscribed"}
    # Never resubscribed, whichever spelling the next import uses.
    again = import_csv(store, path)
    assert again.kept_out == 1 and list(store.subscribers.deliverable_recipients()) == []
    # A SendGrid event naming the U-label finds the reader too.
    store.subscribers.upsert_subscribers([Subscriber("max@xn--bcher-kva.example")])
    report = sendgrid_events.apply(
        store, [{"event": "bounce", "type": "bounce", "email": "max@bücher.example"}]
    )
    assert report.new_suppressions == 1
    assert store.subscribers.subscriber("max@xn--bcher-kva.example").status == "bounced"  # type: ignore[union-attr]


def _header(raw: bytes, name: str) -> str:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.decode("utf-8")
    raise AssertionError(f"no {name} header")


@pytest.mark.parametrize("stored", [U_LABEL, A_LABEL])  # U_LABEL: a snapshot older than 0005
def test_the_to_header_of_an_idn_reader_is_valid_rfc_5322_with_the_a_label(
    the_letter: Letter, stored: str
) -> None:
    raw = the_letter.message_for(Recipient(stored, "Olivia")).as_bytes()
    assert _header(raw, "To") == f"To: Olivia <{A_LABEL}>"  # never an encoded-word inside
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    (address,) = parsed["To"].addresses  # type: ignore[union-attr]
    assert address.addr_spec == A_LABEL and not parsed["To"].defects  # type: ignore[union-attr]


def test_a_non_ascii_local_part_goes_out_over_smtputf8_with_utf8_headers(
    the_letter: Letter,
) -> None:
    relay = Relay()
    with serving(relay, smtputf8=True) as port:
        backend = SMTPBackend("127.0.0.1", port, security="none")
        result = backend.push(
            the_letter,
            Batch(1, 1, [Recipient("jörg@example.org", "Jörg"), Recipient(A_LABEL, "Olivia")]),
        )
        backend.close()
    assert result.message_id == "2 accepted" and not result.refused
    jorg, olivia = relay.taken
    assert jorg.rcpt_tos == ["jörg@example.org"] and "SMTPUTF8" in jorg.mail_options
    assert _header(jorg.raw, "To") == "To: Jörg <jörg@example.org>"  # RFC 6532: raw UTF-8
    assert olivia.rcpt_tos == [A_LABEL] and "SMTPUTF8" not in olivia.mail_options


def test_sendgrid_refuses_a_non_ascii_local_part_with_the_reason(the_letter: Letter) -> None:
    with FakeSendGrid() as fake:
        backend = SendGridBackend(DEFAULT_KEY, host=fake.url)
        try:
            readers = [Recipient("ana@example.org", "Ana"), Recipient("jörg@example.org", "Jörg")]
            result = backend.push(the_letter, Batch(1, 1, readers))
        finally:
            backend.close()
        assert fake.emails() == ["ana@example.org"]
    ((refused, reason),) = result.refused
    assert refused == "jörg@example.org" and "SendGrid does not deliver" in reason


def test_the_cli_compares_on_the_a_label_and_shows_the_u_label(tmp_path: Path) -> None:
    path = copy_newsroom(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}",
    }

    def digest(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "digest.cli", "subscribers", *args, "--config", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    digest("add", A_LABEL, "--name", "Olivia")
    listed = digest("list")
    assert U_LABEL in listed and A_LABEL not in listed
    assert f"{A_LABEL} unsubscribed" in digest("remove", "Olivia@Bücher.example")
    shown = digest("show", U_LABEL)
    assert f"{U_LABEL}  Olivia  status: unsubscribed" in shown


# -- migration 0005: stored U-labels become A-labels ----------------------------------


def _upgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def test_migration_0005_converts_u_labels_and_keeps_the_reader_who_left(db_url: str) -> None:
    _upgrade(db_url, "0003")
    at = datetime(2025, 11, 1)  # naive UTC, as the store writes it
    later = datetime(2025, 11, 20)
    subscribers = [
        # Both spellings; the A-label one had unsubscribed: that one stays.
        ("olivia@bücher.example", "Olivia U", "active"),
        ("olivia@xn--bcher-kva.example", "Olivia A", "unsubscribed"),
        # Both spellings; the U-label one had left: its row stays, under the A-label.
        ("max@bücher.example", "Max U", "unsubscribed"),
        ("max@xn--bcher-kva.example", "Max A", "active"),
        # One spelling: converted.
        ("jo@münchen.example", "Jo", "active"),
        # An A-label reader whose U-label spelling bounced (see the suppressions).
        ("kim@xn--bcher-kva.example", "Kim", "active"),
        ("ann@example.org", "Ann", "active"),
    ]
    suppressions = [
        ("max@bücher.example", "unsubscribed", at),
        ("olivia@xn--bcher-kva.example", "unsubscribed", at),
        ("kim@bücher.example", "bounced", at),  # the first reason stands
        ("kim@xn--bcher-kva.example", "unsubscribed", later),
    ]
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for address, name, status in subscribers:
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, name, sections, status, attributes, "
                    "updated_at) VALUES (:e, :n, '', :s, '{}', :t)"
                ),
                {"e": address, "n": name, "s": status, "t": at},
            )
        for address, reason, when in suppressions:
            conn.execute(
                text(
                    "INSERT INTO suppressions (email, reason, source, created_at) "
                    "VALUES (:e, :r, 'test', :t)"
                ),
                {"e": address, "r": reason, "t": when},
            )
    engine.dispose()

    store = Store.open(db_url)  # upgrades to the newest revision
    try:
        readers = {s.email: (s.name, s.status) for s in store.subscribers.iter_subscribers()}
        gone = store.subscribers.suppressed(
            [
                "olivia@xn--bcher-kva.example",
                "max@xn--bcher-kva.example",
                "kim@xn--bcher-kva.example",
            ]
        )
        left_over = store.subscribers.suppressed(["max@bücher.example", "kim@bücher.example"])
    finally:
        store.close()
    assert readers == {
        "olivia@xn--bcher-kva.example": ("Olivia A", "unsubscribed"),
        "max@xn--bcher-kva.example": ("Max U", "unsubscribed"),
        "jo@xn--mnchen-3ya.example": ("Jo", "active"),
        "kim@xn--bcher-kva.example": ("Kim", "bounced"),
        "ann@example.org": ("Ann", "active"),
    }
    assert gone == {
        "olivia@xn--bcher-kva.example": "unsubscribed",
        "max@xn--bcher-kva.example": "unsubscribed",
        "kim@xn--bcher-kva.example": "bounced",
    }
    assert left_over == {}
