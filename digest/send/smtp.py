"""The SMTP backend: one message per recipient, over one reused connection per thread.

Tokens are filled here (Letter.message_for), so each reader gets a complete
RFC 5322 message addressed to them alone. The connection is opened on the first
batch and kept for the next ones (a relay that accepts 1,000 messages on one
connection is far cheaper than 1,000 handshakes); a server that hangs up between
messages gets one reconnect.

Recipient by recipient, the backend tells the batch's journal (journal.py) what
happened, so no retry, resume or crash mails an accepted recipient again:
"trying" before MAIL FROM, then accepted (250 after DATA), refused for good
(5xx: alone, with the server's words; the rest of the batch goes on), deferred
(4xx, or the connection lost before DATA: the batch is tried again, without
whoever was settled), or unsure: the connection died after the message was
handed over and before the answer (RFC 5321 section 4.1.1.4: the relay may have
taken it with the final dot). That one recipient is in doubt, not the batch.
The transaction is driven step by step (MAIL, RCPT, DATA) rather than through
smtplib's sendmail, which cannot say at which step a connection died.

Internationalised addresses: domains go out as A-labels; a non-ASCII local part
needs SMTPUTF8 (RFC 6531), which the transaction then declares, with the message
in UTF-8 headers (RFC 6532). A server that does not offer it gets no such
message: that recipient is refused, with the reason, and the rest go on.

Security (`[delivery] smtp_security`): "starttls" (RFC 3207, port 587), "tls"
(implicit TLS, RFC 8314, port 465) or "none" (a local relay). The login is
DIGEST_SMTP_USERNAME (or `smtp_username`) and DIGEST_SMTP_PASSWORD, from the
environment only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import threading

from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Batch, Recipient
from digest.send.base import BatchRejected, Letter, PushResult, SendStopped, TransientError
from digest.send.journal import Journal
from digest.subscribers import a_label_address, needs_smtputf8

log = logging.getLogger("digest.send.smtp")


def _code_text(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    return f"{code} {text}".strip()


#: RFC 3463 enhanced status 5.1.x: "addressing status", a bad destination
#: mailbox (5.1.1), system (5.1.2) or address syntax (5.1.3), moved (5.1.6), no
#: mail accepted at the domain (5.1.10, RFC 7505 null MX).
_BAD_ADDRESS = re.compile(r"(?:^|\s)5\.1\.\d{1,3}(?:\s|$)")


def is_hard_bounce(reply: str) -> bool:
    """Does this refusal say the address does not exist, so it never will take mail?

    Only then is an address suppressed. A bare 550 is no proof: servers also use
    it for policy and spam blocks (5.7.x), after which the address is fine. 551
    (user not local) and 553 (mailbox name not allowed) say it of the address
    (RFC 5321 4.2.3).
    """
    code = reply[:3]
    return code in ("551", "553") or (code.startswith("5") and bool(_BAD_ADDRESS.search(reply[3:])))


#: RFC 5321 section 4.5.2, transparency: a line of the message that starts with
#: "." gets a second one, so that only CRLF "." CRLF ends the data.
_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Refused(Exception):
    """The server answered a step of the transaction (MAIL, RCPT, DATA) with an error."""

    def __init__(self, step: str, code: int, reply: bytes | str) -> None:
        super().__init__(_code_text(code, reply))
        self.step = step
        self.code = code


class _MaybeSent(Exception):
    """The connection failed after the message was handed over, before the answer."""


class SMTPBackend:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ConfigError(f"smtp_security {security!r} must be none, starttls or tls")
        if username and not password:
            raise ConfigError(
                f"SMTP user {username!r} is set but DIGEST_SMTP_PASSWORD is not; "
                "put the password in the environment"
            )
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[smtplib.SMTP] = []
        self.connections_opened = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPBackend:
        d = settings.delivery
        return cls(
            d.smtp_host,
            d.smtp_port,
            security=d.smtp_security,
            username=d.smtp_username,
            password=settings.env.get("DIGEST_SMTP_PASSWORD", ""),
            timeout=d.request_timeout,
        )

    # -- the connection ------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            if self.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            try:
                smtp.ehlo()
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self._password)
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            raise SendStopped(
                f"{where} refused the login for {self.username!r} "
                f"({_code_text(exc.smtp_code, exc.smtp_error)}); check DIGEST_SMTP_USERNAME "
                "and DIGEST_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise SendStopped(
                f"{where} does not offer what smtp_security = {self.security!r} needs ({exc}); "
                "check [delivery] smtp_security and smtp_port"
            ) from None
        except ssl.SSLError as exc:
            raise SendStopped(f"{where}: TLS failed ({exc.reason or exc})") from None
        except (OSError, smtplib.SMTPException) as exc:
            # Refused, unreachable, timed out, or hung up while greeting us.
            raise TransientError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from None
        with self._lock:
            self._open.append(smtp)
            self.connections_opened += 1
        return smtp

    def _connection(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is None:
            smtp = self._connect()
            self._local.smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with self._lock:
                if smtp in self._open:
                    self._open.remove(smtp)
            smtp.close()

    def _hand_over(self, sender: str, address: str, body: bytes, options: list[str]) -> None:
        """One transaction: MAIL, RCPT, DATA (RFC 5321 section 3.3), one step at a time.

        Raises _Refused for an error answer (the transaction is reset for the next
        one), _MaybeSent when the connection failed once the message was sent, and
        anything else (OSError, smtplib's errors) for a failure before that.
        """
        for attempt in (1, 2):
            smtp = self._connection()
            try:
                code, reply = smtp.mail(sender, options)
                if code != 250:
                    raise self._refused(smtp, "MAIL", code, reply)
                code, reply = smtp.rcpt(address)
                if code not in (250, 251):
                    raise self._refused(smtp, "RCPT", code, reply)
                code, reply = smtp.docmd("DATA")
                if code != 354:
                    raise self._refused(smtp, "DATA", code, reply)
                break
            except smtplib.SMTPServerDisconnected:
                # The server closed a connection we kept open (idle timeout, a
                # restart) before taking anything: reconnect once. A second
                # hang-up is the ledger's to retry.
                self._drop()
                if attempt == 2:
                    raise
        # From here the server may take the message the moment it reads the final dot.
        data = _LEADING_DOT.sub(b"..", body)
        data += (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"
        try:
            smtp.send(data)
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise _MaybeSent(f"{type(exc).__name__}: {exc}") from None
        if code != 250:
            raise self._refused(smtp, "DATA", code, reply)

    def _refused(self, smtp: smtplib.SMTP, step: str, code: int, reply: bytes) -> _Refused:
        if code == 421:  # the server is closing the connection (RFC 5321 section 3.8)
            self._drop()
        else:
            with contextlib.suppress(smtplib.SMTPServerDisconnected):
                smtp.rset()  # RFC 5321 section 4.1.1.5: a clean slate for the next one
        return _Refused(step, code, reply)

    def _deliver(self, letter: Letter, recipient: Recipient, journal: Journal) -> None:
        """Hand one recipient's message over and tell the journal how it went."""
        email = recipient.email
        address = a_label_address(email)
        international = needs_smtputf8(address) or needs_smtputf8(letter.from_email)
        smtp = self._connection()
        where = f"{self.host}:{self.port}"
        if international and not smtp.has_extn("smtputf8"):
            missing = f"SMTPUTF8 (RFC 6531), which the SMTP server {where} does not offer"
            if needs_smtputf8(letter.from_email):
                raise SendStopped(f"the sender {letter.from_email} needs {missing}")
            reason = f"not sent: the address needs {missing}"
            journal.refused(email, reason)
            log.warning("%s %s", email, reason)
            return
        body = letter.message_for(recipient).as_bytes()
        options = ["SMTPUTF8"] if international else []
        if not body.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(body)}")  # RFC 1870: a server may refuse it up front
        journal.trying(email)
        try:
            self._hand_over(a_label_address(letter.from_email), address, body, options)
        except _MaybeSent as exc:
            journal.unsure(email, f"the connection failed after the message was sent ({exc})")
            raise TransientError(
                f"SMTP connection failed after the message to {email} was sent; "
                f"it is in doubt ({exc})",
                partial=True,
            ) from None
        except _Refused as exc:
            reason = str(exc)
            if exc.step == "MAIL":
                journal.deferred(email)
                self._drop()
                if 400 <= exc.code < 500:
                    raise TransientError(
                        f"SMTP server deferred the sender: {reason}", status=exc.code
                    ) from None
                raise SendStopped(
                    f"SMTP server refused the sender {letter.from_email}: {reason}",
                    status=exc.code,
                ) from None
            if 400 <= exc.code < 500:  # "try again later": the batch comes back
                journal.deferred(email)
                if exc.step == "DATA":
                    self._drop()
                raise TransientError(
                    f"SMTP server deferred {email}: {reason}", status=exc.code
                ) from None
            journal.refused(email, reason)
            log.warning("SMTP server refused %s: %s", email, reason)
            return
        except (TransientError, SendStopped):  # the one reconnect failed
            journal.deferred(email)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            journal.deferred(email)
            self._drop()
            raise TransientError(f"SMTP connection failed: {type(exc).__name__}: {exc}") from None
        journal.accepted(email)

    # -- the backend ---------------------------------------------------------------
    def push(self, letter: Letter, batch: Batch) -> PushResult:
        # Outside a send (a test copy) the tally is kept in memory for this push.
        journal = batch.journal if batch.journal is not None else Journal()
        try:
            for recipient in batch.recipients:
                if not journal.done(recipient.email):
                    self._deliver(letter, recipient, journal)
        except TransientError as exc:
            # Should the ledger give up, would a later claim mail someone twice? Then
            # the batch is left in doubt rather than failed.
            exc.partial = exc.partial or journal.may_repeat
            raise
        finally:
            journal.flush()  # before the ledger records the batch, whatever happened
        refused = journal.refusals
        bounced = tuple((email, reply) for email, reply in refused.items() if is_hard_bounce(reply))
        if refused and not journal.accepted_count and not journal.doubts:
            first = next(iter(refused.items()))
            raise BatchRejected(
                f"the SMTP server refused all {len(refused)} recipients of batch "
                f"{batch.number} (first: {first[0]}: {first[1]})",
                bounced=bounced,
            )
        if refused:
            log.warning(
                "batch %d: %d of %d recipients refused by the SMTP server",
                batch.number,
                len(refused),
                len(batch.recipients),
            )
        note = f"{journal.accepted_count} accepted" + (
            f", {len(refused)} refused" if refused else ""
        )
        if journal.doubts:
            note += f", {len(journal.doubts)} in doubt"
        return PushResult(
            status=250,
            message_id=note,
            refused=tuple(refused.items()),
            bounced=bounced,
            in_doubt=tuple(journal.doubts.items()),
        )

    def flush(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for smtp in connections:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        self._local = threading.local()
