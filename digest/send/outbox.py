"""The outbox backend: one .eml file per recipient in a folder. The embedded default.

File names are fixed by edition, batch and address, so retrying a batch that was
in doubt overwrites its files instead of adding copies.

Like SMTP it delivers recipient by recipient, so it records them in the batch's
journal (journal.py), a chunk of files at a time: "trying" before a chunk is
written, "accepted" after. A pickup process that takes files away as they come
then never gets a second copy from a resume: only the files of the chunk a crash
interrupted are written again (to the same names).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from digest.models import Batch
from digest.send.base import Letter, PushResult
from digest.send.journal import Journal

#: Files per journal write: one small transaction per this many files, rather than
#: one per file, keeps the embedded default as fast as before.
CHUNK = 100


class OutboxBackend:
    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def push(self, letter: Letter, batch: Batch) -> PushResult:
        target = self.folder / (f"test-{letter.edition}" if letter.test else letter.edition)
        target.mkdir(parents=True, exist_ok=True)
        journal = batch.journal if batch.journal is not None else Journal()
        left = [r for r in batch.recipients if not journal.done(r.email)]
        try:
            for start in range(0, len(left), CHUNK):
                chunk = left[start : start + CHUNK]
                journal.trying(*(r.email for r in chunk))
                for recipient in chunk:
                    digest = hashlib.sha256(recipient.email.encode()).hexdigest()[:12]
                    path = target / f"{batch.number:05d}-{digest}.eml"
                    temporary = path.with_suffix(".tmp")
                    temporary.write_bytes(letter.message_for(recipient).as_bytes())
                    os.replace(temporary, path)  # atomic: a reader never sees half a message
                journal.accepted(*(r.email for r in chunk))
        finally:
            journal.flush()
        return PushResult(status=250, message_id=str(target))

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
