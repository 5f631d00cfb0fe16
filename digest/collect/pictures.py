"""Heavy pictures from other sites, kept here so that readers get an email-sized copy.

A feed's picture is often the camera original: 6 MB, 5,000 px wide, for a slot the
email shows 600 px wide. Every reader on a phone pays for it, and some clients give up
on it. With `[web] rehost_pictures_over_kb` set, collect downloads each story's remote
picture once (through the collect's Fetcher: its size cap and deadlines hold) and, when
it weighs more than that, keeps the original in `DATA_DIR/pictures/` and points the
story at it. The renderer then publishes it as it publishes any local picture
(digest.media): an email-sized copy without metadata under `[web] base_url/media/`.

Off by default (0): it makes collect fetch from the hosts the feeds name, which a
newsroom turns on knowingly. Only http(s) pictures are fetched, never a local path a
feed wrote; only PNG, JPEG, GIF and WebP are kept (by their first bytes); anything that
cannot be fetched stays linked where it was, with one line. A picture is fetched once:
its original, or a mark that it was light enough, is kept under the hash of its URL.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from digest.collect.fetch import Fetcher
from digest.config import Settings, is_picture_file
from digest.errors import InputError
from digest.models import Story

log = logging.getLogger("digest.collect")

_KINDS = ((b"\x89PNG", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"), (b"RIFF", "webp"))
#: The mark left for a picture that was light enough to stay where it is.
_LIGHT = ".light"


def pictures_dir(settings: Settings) -> Path:
    return settings.data_dir / "pictures"


class Rehoster:
    """Swaps the heavy remote pictures of collected stories for local originals."""

    def __init__(self, settings: Settings, fetcher: Fetcher) -> None:
        self.over_bytes = settings.rehost_pictures_over_kb * 1000
        self.folder = pictures_dir(settings)
        self.fetcher = fetcher

    def __call__(self, stories: Iterable[Story]) -> list[Story]:
        return [self._story(story) for story in stories]

    def _story(self, story: Story) -> Story:
        url = story.image_url
        if not self.over_bytes or urlsplit(url).scheme.lower() not in ("http", "https"):
            return story
        local = self._original(url, story.source)
        return replace(story, image_url=local.as_uri()) if local else story

    def _original(self, url: str, source: str) -> Path | None:
        """The kept original of a heavy picture, or None to leave the link as it is."""
        stem = hashlib.blake2b(url.encode(), digest_size=16).hexdigest()
        # A few stat calls by name, not a scan of the folder for every story collected.
        if (self.folder / f"{stem}{_LIGHT}").exists():
            return None
        for _, kind in _KINDS:
            if (kept := self.folder / f"{stem}.{kind}").exists():
                return kept
        try:
            data = self.fetcher.fetch(url).data
        except InputError as exc:
            log.warning("%s: picture %s not fetched, left linked (%s)", source, url, exc)
            return None
        kind = next((ext for magic, ext in _KINDS if data.startswith(magic)), "")
        if len(data) <= self.over_bytes or not kind:
            if not kind:
                log.warning("%s: %s is not a PNG, JPEG, GIF or WebP picture", source, url)
            self._write(f"{stem}{_LIGHT}", b"")
            return None
        kept = self._write(f"{stem}.{kind}", data)
        if not is_picture_file(kept):  # "RIFF" alone is WAV as well as WebP
            kept.unlink()
            self._write(f"{stem}{_LIGHT}", b"")
            return None
        return kept

    def _write(self, name: str, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        fd, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)  # whole or not at all: a crash leaves no half picture
        return target
