"""Send: deliver a rendered edition to every subscriber exactly once.

`ledger` holds the exactly-once bookkeeping; each backend (outbox, SMTP,
SendGrid) is one small class in its own module behind `base.Backend`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from digest.config import Settings
from digest.errors import ConfigError
from digest.locale import language
from digest.models import Batch, Recipient, RenderedEdition
from digest.send.base import Backend, Letter, PushResult


def make_backend(settings: Settings, name: str | None = None) -> Backend:
    name = name or settings.delivery.backend
    if name == "outbox":
        from digest.send.outbox import OutboxBackend

        return OutboxBackend(settings.delivery.outbox_dir)
    if name == "smtp":
        from digest.send.smtp import SMTPBackend

        return SMTPBackend.from_settings(settings)
    if name == "sendgrid":
        from digest.send.sendgrid import SendGridBackend

        return SendGridBackend.from_settings(settings)
    raise ConfigError(f"unknown backend {name!r}: use outbox, smtp or sendgrid")


def letter_for(settings: Settings, rendered: RenderedEdition, *, test: bool = False) -> Letter:
    host = urlsplit(settings.newsroom.website).netloc or "digest.local"
    return Letter(
        edition=rendered.name,
        rendered=rendered,
        subject=("[TEST] " if test else "") + rendered.subject,
        from_email=settings.sender.from_email,
        from_name=settings.sender.from_name,
        reply_to=settings.sender.reply_to,
        unsubscribe_base=f"{settings.base_url}/unsubscribe/",
        unsubscribe_mailto=settings.sender.unsubscribe_mailto,
        secret=settings.secret_key,
        list_id=f"{settings.newsroom.name} daily digest <digest.{host}>",
        categories=settings.delivery.categories,
        test=test,
        greetings=language(settings.newsroom.locale, settings.templates_dir).greetings(),
    )


def notice_for(settings: Settings, subject: str, body: str) -> Letter:
    """A plain notice to the operators (a held or failed send): not list mail, so it
    carries no List-Id, List-Unsubscribe or categories, and no unsubscribe link."""
    rendered = RenderedEdition(
        name="alerts",
        subject=f"[{settings.newsroom.name} digest] {subject}",
        preheader="",
        html=f"<pre>{html.escape(body)}</pre>",
        text=body,
    )
    return Letter(
        edition=rendered.name,
        rendered=rendered,
        subject=rendered.subject,
        from_email=settings.sender.from_email,
        from_name=settings.sender.from_name,
        reply_to=settings.sender.reply_to,
        unsubscribe_base="",
        unsubscribe_mailto="",
        secret=b"",
    )


def send_now(
    settings: Settings, letter: Letter, addresses: Sequence[str], backend: str | None = None
) -> PushResult:
    """One letter to a few addresses outside any send (an editor's test copy, a notice
    to the operators): one batch, straight through the backend, nothing in the ledger.

    The batch is numbered by the clock: it belongs to no send, and the outbox names
    its files by batch number, so a later notice never overwrites an earlier one.
    """
    batch = Batch(
        send_id=0,
        number=time.time_ns() // 1000,
        recipients=[Recipient(address) for address in addresses],
    )
    mailer = make_backend(settings, backend)
    try:
        result = mailer.push(letter, batch)
        mailer.flush()
        return result
    finally:
        mailer.close()
