"""Pictures that load: a local picture is published under the newsroom's web address.

A mail client loads pictures from the web and nowhere else; a `file:///srv/...` link
in an email is a broken picture for every reader and tells them a path on the server.
So before a copy is rendered, every local picture it shows (the logo, a story's image
from a feed or page that is itself a local file, like the sample newsroom's) is copied
into `DATA_DIR/media/` under the hash of its bytes and linked as
`[web] base_url/media/NAME`, which `digest web` serves (or any web server pointed at
that folder). The name changes when the bytes do, so it can be cached for good.

Only pictures are published: a file is taken when its first bytes say PNG, JPEG, GIF
or WebP (config.is_picture_file), whatever its name says, so a `logo_url` or a feed's
`file:///etc/passwd` never puts a server file on the web. Sizing pictures for email
(twice their display width) is issue 11's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digest.config import Settings, is_picture_file

log = logging.getLogger("digest.media")

#: The largest local picture published as it is: a mail's picture over this is a
#: mistake (a camera original), and readers on a phone would pay for it.
MAX_PICTURE_BYTES = 10 * 1024 * 1024
#: What `digest web` will serve from the media folder: our own names, nothing else.
MEDIA_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|webp)$")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def media_dir(settings: Settings) -> Path:
    return settings.data_dir / "media"


def _extension(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"GIF8"):
        return "gif"
    return "webp"


class Publisher:
    """Turns the picture addresses of one render into addresses a mail client loads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._done: dict[str, str] = {}

    def web_address(self, url: str) -> str:
        """http(s) as it is; a local picture published; anything else "" (left out)."""
        if not url:
            return ""
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return url
        if scheme != "file":
            return ""
        if url not in self._done:
            self._done[url] = self._publish(Path(unquote(urlsplit(url).path)))
        return self._done[url]

    def _publish(self, path: Path) -> str:
        if not is_picture_file(path):
            log.warning("picture %s is not a PNG, JPEG, GIF or WebP file; left out", path)
            return ""
        data = path.read_bytes()
        if len(data) > MAX_PICTURE_BYTES:
            log.warning(
                "picture %s is %d MB, over %d MB; left out",
                path,
                len(data) // 2**20,
                MAX_PICTURE_BYTES // 2**20,
            )
            return ""
        name = f"{hashlib.blake2b(data, digest_size=16).hexdigest()}.{_extension(data[:12])}"
        folder = media_dir(self.settings)
        target = folder / name
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            # Written whole, then renamed: a reader never loads half a picture.
            fd, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        return f"{self.settings.base_url}/media/{name}"


def published(settings: Settings, name: str) -> tuple[Path, str] | None:
    """(file, content type) of a published picture, or None: only our own names."""
    match = MEDIA_NAME.match(name)
    if match is None:
        return None
    path = media_dir(settings) / name
    return (path, MEDIA_TYPES[match.group(1)]) if path.is_file() else None
