"""The outbox backend: one .eml file per recipient in a folder. The embedded default.

File names are fixed by edition, batch and address, so retrying a batch that was
in doubt overwrites its files instead of adding copies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from digest.models import Batch
from digest.send.base import Letter, PushResult


class OutboxBackend:
    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def push(self, letter: Letter, batch: Batch) -> PushResult:
        target = self.folder / (f"test-{letter.edition}" if letter.test else letter.edition)
        target.mkdir(parents=True, exist_ok=True)
        for recipient in batch.recipients:
            digest = hashlib.sha256(recipient.email.encode()).hexdigest()[:12]
            path = target / f"{batch.number:05d}-{digest}.eml"
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(letter.message_for(recipient).as_bytes())
            os.replace(temporary, path)  # atomic: a reader never sees half a message
        return PushResult(status=250, message_id=str(target))

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
