"""Telling the operators: a failed, held, skipped or interrupted send reaches a person.

`Alert` is what the runner calls with a subject and a body; `mail_operators`, the
default, mails `[sender] operators` the way every other mail goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from digest.config import Settings
from digest.send import notice_for, send_now

# One logger for the whole scheduler, as before the split: its lines are `digest.schedule`.
log = logging.getLogger("digest.schedule")

Alert = Callable[[str, str], object]


def mail_operators(settings: Settings, subject: str, body: str) -> bool:
    """Mail the operators in digest.toml through the configured backend; never raises.

    The mail goes where every other mail goes (an .eml in the outbox, SMTP or
    SendGrid), so a held or failed send reaches a person before readers notice.
    """
    operators = settings.sender.operators
    if not operators:
        log.warning(
            "no [sender] operators in %s, so this was not mailed: %s", settings.path, subject
        )
        return False
    try:
        send_now(settings, notice_for(settings, subject, body), operators)
    except Exception as exc:  # an alert that cannot go out must not stop the scheduler
        log.error("could not mail the operators (%s): %s", subject, exc)
        return False
    log.info("mailed the operators (%s): %s", ", ".join(operators), subject)
    return True
