"""The SMTP backend against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import need
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted, letter, with_delivery

from digest import config, jobs
from digest.config import Settings
from digest.models import Batch, Recipient
from digest.send.base import BatchRejected, Letter, SendStopped, TransientError
from digest.send.journal import Journal
from digest.send.smtp import SMTPBackend, is_hard_bounce
from digest.subscribers import verify_token

USER, PASSWORD = "digest", "s3cret-password"
READERS = [Recipient(f"reader{i}@example.org", f"Reader {i}") for i in range(5)]


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message and can refuse or defer some."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    tls_sessions: set[int] = field(default_factory=set)
    authenticated: set[int] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)  # 550 5.1.1 at RCPT: no such user
    block: set[str] = field(default_factory=set)  # 550 5.7.1 at RCPT: a policy refusal
    defer_once: set[str] = field(default_factory=set)  # 451 at RCPT, the first time

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        if address in self.block:
            return "550 5.7.1 message refused by policy"
        if address in self.defer_once:
            self.defer_once.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        self.sessions.add(id(session))
        # session.ssl is set by STARTTLS; an implicit-TLS socket shows in the transport.
        if session.ssl or server.transport.get_extra_info("ssl_object") is not None:
            self.tls_sessions.add(id(session))
        if session.authenticated:
            self.authenticated.add(id(session))
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(inbox: Inbox, port: int, **options: Any) -> Controller:
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
        **options,
    )
    controller.start()
    return controller


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def server(inbox: Inbox) -> Iterator[int]:
    port = _free_port()
    controller = _serve(inbox, port)
    yield port
    controller.stop()


@pytest.fixture(scope="module")
def the_letter(tmp_path_factory: pytest.TempPathFactory) -> Letter:
    root = tmp_path_factory.mktemp("smtp-newsroom")
    settings = config.load(copy_newsroom(root), env={"DIGEST_SECRET_KEY": SECRET})
    drafted(settings)
    return letter(settings)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    need(shutil.which("openssl") is not None, "openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_one_message_per_recipient_over_one_reused_connection(
    server: int, inbox: Inbox, the_letter: Letter
) -> None:
    backend = SMTPBackend("127.0.0.1", server, security="none")
    first = backend.push(the_letter, Batch(1, 1, READERS[:3]))
    backend.push(the_letter, Batch(1, 2, READERS[3:]))
    backend.close()
    assert first.status == 250 and first.message_id == "3 accepted"
    assert [rcpt for _sender, rcpt, _m in inbox.messages] == [[r.email] for r in READERS]
    assert len(inbox.sessions) == 1 and backend.connections_opened == 1
    for (sender, _rcpt, message), reader in zip(inbox.messages, READERS, strict=True):
        assert sender == "digest@news.example.org"
        assert message["To"].addresses[0].addr_spec == reader.email
        assert len(message["To"].addresses) == 1 and message["Cc"] is None
        assert message.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert message["Subject"] == the_letter.subject
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
        assert verify_token(SECRET.encode(), url.rsplit("/", 1)[1]) == reader.email
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"Good morning, {reader.name}." in text and url in text
        assert "%%" not in text


@pytest.fixture
def server_context(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> ssl.SSLContext:
    """The server's TLS context; the client trusts our certificate through SSL_CERT_FILE."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return context


@pytest.mark.parametrize(
    ("security", "server_options", "login"),
    [
        ("starttls", {"require_starttls": True}, True),  # RFC 3207, port 587
        ("tls", {}, False),  # implicit TLS, RFC 8314, port 465
    ],
)
def test_tls_and_login(
    inbox: Inbox,
    the_letter: Letter,
    server_context: ssl.SSLContext,
    security: str,
    server_options: dict[str, Any],
    login: bool,
) -> None:
    port = _free_port()
    tls = {"tls_context" if security == "starttls" else "ssl_context": server_context}
    controller = _serve(inbox, port, **tls, **server_options)
    try:
        credentials = {"username": USER, "password": PASSWORD} if login else {}
        backend = SMTPBackend("127.0.0.1", port, security=security, **credentials)
        backend.push(the_letter, Batch(1, 1, READERS[:2]))
        backend.close()
    finally:
        controller.stop()
    assert len(inbox.messages) == 2
    assert inbox.tls_sessions == inbox.sessions
    assert inbox.authenticated == (inbox.sessions if login else set())


def test_a_refused_login_stops_the_send_without_repeating_the_password(
    server: int, the_letter: Letter
) -> None:
    backend = SMTPBackend("127.0.0.1", server, security="none", username=USER, password="nope")
    with pytest.raises(SendStopped) as caught:
        backend.push(the_letter, Batch(1, 1, READERS[:1]))
    assert "refused the login for 'digest'" in str(caught.value)
    assert "DIGEST_SMTP_PASSWORD" in str(caught.value) and "nope" not in str(caught.value)


def test_refused_recipients_are_counted_and_the_rest_go_out(
    server: int, inbox: Inbox, the_letter: Letter
) -> None:
    inbox.refuse = {READERS[1].email}
    backend = SMTPBackend("127.0.0.1", server, security="none")
    result = backend.push(the_letter, Batch(1, 1, READERS[:3]))
    assert result.message_id == "2 accepted, 1 refused"
    assert len(inbox.messages) == 2
    inbox.refuse = {r.email for r in READERS[:2]}
    with pytest.raises(BatchRejected, match="refused all 2 recipients"):
        backend.push(the_letter, Batch(1, 2, READERS[:2]))
    backend.close()


def test_a_retried_batch_skips_who_already_got_it(
    server: int, inbox: Inbox, the_letter: Letter
) -> None:
    inbox.defer_once = {READERS[2].email}
    backend = SMTPBackend("127.0.0.1", server, security="none")
    batch = Batch(1, 1, READERS, journal=Journal())  # the ledger gives every batch one
    with pytest.raises(TransientError) as caught:
        backend.push(the_letter, batch)
    assert caught.value.partial and caught.value.status == 451
    backend.push(the_letter, batch)  # what the ledger does next
    backend.close()
    received = [rcpt[0] for _s, rcpt, _m in inbox.messages]
    assert sorted(received) == sorted(r.email for r in READERS)  # each exactly once


def test_a_server_that_hung_up_between_batches_gets_one_reconnect(
    inbox: Inbox, the_letter: Letter
) -> None:
    port = _free_port()
    controller = _serve(inbox, port)
    backend = SMTPBackend("127.0.0.1", port, security="none")
    backend.push(the_letter, Batch(1, 1, READERS[:1]))
    controller.stop()  # the kept connection dies with it
    controller = _serve(inbox, port)
    try:
        backend.push(the_letter, Batch(1, 2, READERS[1:2]))
    finally:
        backend.close()
        controller.stop()
    assert len(inbox.messages) == 2 and backend.connections_opened == 2


def test_nobody_listening_is_transient(the_letter: Letter) -> None:
    backend = SMTPBackend("127.0.0.1", _free_port(), security="none", timeout=2)
    with pytest.raises(TransientError, match="cannot reach SMTP server"):
        backend.push(the_letter, Batch(1, 1, READERS[:1]))


def test_a_whole_send_through_smtp(server: int, inbox: Inbox, tmp_path: Path) -> None:
    settings: Settings = config.load(
        copy_newsroom(tmp_path),
        env={"DIGEST_SECRET_KEY": SECRET, "DIGEST_SMTP_HOST": "127.0.0.1"},
    )
    settings = with_delivery(settings, smtp_port=server, smtp_security="none", batch_size=2)
    settings = replace(settings)
    drafted(settings)
    store = jobs.open_store(settings)
    jobs.sync_subscribers(settings, store)
    result = jobs.send(settings, store, EDITION, backend="smtp")
    store.close()
    # Batches of at most 2 readers of one section preference: 3 with none make two
    # batches, the six others one each.
    assert (result.state, result.sent, result.batches) == ("done", 9, 8)
    assert len(inbox.messages) == 9
    assert len({rcpt[0] for _s, rcpt, _m in inbox.messages}) == 9


def test_an_address_that_does_not_exist_is_suppressed_a_policy_refusal_is_not(
    server: int, inbox: Inbox, tmp_path: Path
) -> None:
    settings: Settings = config.load(
        copy_newsroom(tmp_path),
        env={"DIGEST_SECRET_KEY": SECRET, "DIGEST_SMTP_HOST": "127.0.0.1"},
    )
    settings = with_delivery(settings, smtp_port=server, smtp_security="none")
    drafted(settings)
    store = jobs.open_store(settings)
    jobs.sync_subscribers(settings, store)
    gone, blocked = "dana.kim@example.com", "isla.martin@example.com"
    inbox.refuse, inbox.block = {gone}, {blocked}
    result = jobs.send(settings, store, EDITION, backend="smtp")
    assert result.state == "done"
    assert len(inbox.messages) == 7
    # 5.1.1 says the mailbox does not exist: never mailed again. 5.7.1 is policy.
    assert store.subscribers.suppressed([gone, blocked]) == {gone: "bounced"}
    statuses = {s.email: s.status for s in store.subscribers.iter_subscribers()}
    assert (statuses[gone], statuses[blocked]) == ("bounced", "active")
    refusals = " ".join(error for _n, error in store.sends.refusals(result.send_id))
    assert "5.1.1" in refusals and "5.7.1" in refusals
    # The next import of the same spreadsheet does not bring the address back.
    jobs.sync_subscribers(settings, store)
    assert gone not in {r.email for r in store.subscribers.deliverable_recipients()}
    assert blocked in {r.email for r in store.subscribers.deliverable_recipients()}
    store.close()


@pytest.mark.parametrize(
    ("reply", "hard"),
    [
        ("550 5.1.1 <x@example.org>: Recipient address rejected: User unknown", True),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found", True),
        ("553 sorry, that domain isn't in my list of allowed rcpthosts", True),
        ("551 User not local; please try <y@example.org>", True),
        ("550 5.7.1 Service unavailable; client host blocked using Spamhaus", False),
        ("550 Message rejected", False),
        ("552 5.2.2 Mailbox full", False),
    ],
)
def test_which_refusals_count_as_hard_bounces(reply: str, hard: bool) -> None:
    assert is_hard_bounce(reply) is hard
