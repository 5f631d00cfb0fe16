"""The SMTP backend: one message per recipient, over one reused connection per thread.

Tokens are filled here (Letter.message_for), so each reader gets a complete
RFC 5322 message addressed to them alone. The connection is opened on the first
batch and kept for the next ones (a relay that accepts 1,000 messages on one
connection is far cheaper than 1,000 handshakes); a server that hangs up between
batches gets one reconnect.

Within a batch the backend remembers who was already accepted, so when the
ledger retries a batch after a transient error (a 4xx, a dropped connection)
nobody who got the message before the error gets it again.

Security (`[delivery] smtp_security`): "starttls" (RFC 3207, port 587), "tls"
(implicit TLS, RFC 8314, port 465) or "none" (a local relay). The login is
DIGEST_SMTP_USERNAME (or `smtp_username`) and DIGEST_SMTP_PASSWORD, from the
environment only.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
from typing import Any

from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Batch, Recipient
from digest.send.base import BatchRejected, Letter, PushResult, SendStopped, TransientError

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

    def _send_one(self, letter: Letter, recipient: Recipient) -> None:
        message = letter.message_for(recipient)
        for attempt in (1, 2):
            smtp = self._connection()
            try:
                smtp.send_message(message, from_addr=letter.from_email, to_addrs=[recipient.email])
                return
            except smtplib.SMTPServerDisconnected:
                # The server closed a connection we kept open (idle timeout, a
                # restart): reconnect once. A second hang-up is the ledger's to retry.
                self._drop()
                if attempt == 2:
                    raise

    # -- the backend ---------------------------------------------------------------
    def push(self, letter: Letter, batch: Batch) -> PushResult:
        key = (letter.edition, letter.test, batch.send_id, batch.number)
        # Who already has this batch's message, from an earlier try of the same batch.
        progress: dict[tuple[Any, ...], set[str]] = self._local.__dict__.setdefault("progress", {})
        done = progress.setdefault(key, set())
        refused: dict[str, str] = {}
        for recipient in batch.recipients:
            if recipient.email in done:
                continue
            try:
                self._send_one(letter, recipient)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()), (0, b""))
                if 400 <= code < 500:  # "try again later": the whole batch comes back
                    raise TransientError(
                        f"SMTP server deferred {recipient.email}: {_code_text(code, text)}",
                        status=code,
                        partial=bool(done),
                    ) from None
                refused[recipient.email] = _code_text(code, text)
                log.warning("SMTP server refused %s: %s", recipient.email, refused[recipient.email])
            except smtplib.SMTPSenderRefused as exc:
                self._drop()
                reason = _code_text(exc.smtp_code, exc.smtp_error)
                if 400 <= exc.smtp_code < 500:
                    raise TransientError(
                        f"SMTP server deferred the sender: {reason}",
                        status=exc.smtp_code,
                        partial=bool(done),
                    ) from None
                raise SendStopped(
                    f"SMTP server refused the sender {letter.from_email}: {reason}",
                    status=exc.smtp_code,
                ) from None
            except smtplib.SMTPResponseException as exc:
                # DATA refused or similar: 4xx is worth retrying, 5xx refuses this
                # message only.
                if 400 <= exc.smtp_code < 500:
                    self._drop()
                    raise TransientError(
                        f"SMTP server: {_code_text(exc.smtp_code, exc.smtp_error)}",
                        status=exc.smtp_code,
                        partial=bool(done),
                    ) from None
                refused[recipient.email] = _code_text(exc.smtp_code, exc.smtp_error)
                log.warning("SMTP server refused %s: %s", recipient.email, refused[recipient.email])
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TransientError(
                    f"SMTP connection failed: {type(exc).__name__}: {exc}"
                ) from None
            done.add(recipient.email)
        del progress[key]
        bounced = tuple((email, reply) for email, reply in refused.items() if is_hard_bounce(reply))
        if refused and len(refused) == len(batch.recipients):
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
        sent = len(batch.recipients) - len(refused)
        note = f"{sent} accepted" + (f", {len(refused)} refused" if refused else "")
        return PushResult(
            status=250, message_id=note, refused=tuple(refused.items()), bounced=bounced
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
