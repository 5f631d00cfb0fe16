"""The subject each batch of a subject test goes out with.

A batch of a send with a subject test carries its subject's number (Batch.variant,
digest/store/subjects.py); the ledger asks Titles for the letter with that subject.
Every backend takes the subject from the letter (Letter.subject: the outbox and SMTP
through Letter.message_for, SendGrid in its request), so this is the one place it
changes.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from digest.errors import SendError
from digest.models import Batch
from digest.send.base import Letter


class Titles:
    """A subject test's subjects, and the letters retitled with them (one per copy and
    subject, shared by the send's threads)."""

    def __init__(self, subjects: Sequence[str]) -> None:
        self.subjects = tuple(subjects)
        self._made: dict[tuple[int, int], Letter] = {}
        self._lock = threading.Lock()

    def letter(self, letter: Letter, batch: Batch) -> Letter:
        """The letter for the batch: as it is, or with the batch's test subject."""
        if batch.variant is None:
            return letter
        if not 0 <= batch.variant < len(self.subjects):
            raise SendError(
                f"send {letter.edition}: batch {batch.number} goes out with subject "
                f"{batch.variant + 1} of a subject test the edition does not have; "
                "this is a bug: the send is left as it is"
            )
        key = (id(letter), batch.variant)
        with self._lock:
            if key not in self._made:
                self._made[key] = dataclasses.replace(letter, subject=self.subjects[batch.variant])
            return self._made[key]
