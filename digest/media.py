"""Pictures that load: a local picture is published under the newsroom's web address.

A mail client loads pictures from the web and nowhere else; a `file:///srv/...` link
in an email is a broken picture for every reader and tells them a path on the server.
So before a copy is rendered, every local picture it shows (the logo, a story's image
from a feed or page that is itself a local file, like the sample newsroom's) is copied
into `DATA_DIR/media/` under the hash of its bytes and linked as
`[web] base_url/media/NAME`, which `digest web` serves (or any web server pointed at
that folder). The name changes when the bytes do, so it can be cached for good.

Only pictures are published: a file is taken when its first bytes say PNG, JPEG, GIF
or WebP (config.is_picture_file) and Pillow can decode it, whatever its name says, so a
`logo_url` or a feed's `file:///etc/passwd` never puts a server file on the web.

What is published is an email-sized copy, not the original: at most twice the width
the template shows it at (the lead 600 px wide -> 1200 px, so it is sharp on a
high-density phone; a thumbnail 180 px -> 360 px), with its metadata (EXIF, GPS, camera
serials, comments) left behind. A camera original of 8 MB becomes a few hundred KB that
a reader on a phone does not pay for. WebP becomes JPEG (or PNG with transparency):
Outlook for Windows and older Apple Mail do not show WebP (caniemail "image-webp").
An animated GIF is published as it is, since re-encoding would stop it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path
from stat import S_ISREG
from urllib.parse import unquote, urlsplit

from digest.config import Settings, is_picture_file

log = logging.getLogger("digest.media")

#: The largest local file read as a picture at all: past this it is not a picture
#: meant for a newsletter, and decoding it would cost more than it is worth.
MAX_PICTURE_BYTES = 50 * 1024 * 1024
#: Twice the template's display widths (see templates/partials): sharp on 2x screens.
LEAD_WIDTH = 1200
THUMB_WIDTH = 360
LOGO_WIDTH = 480
JPEG_QUALITY = 82
#: What `digest web` will serve from the media folder: our own names, nothing else.
MEDIA_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|webp)$")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def media_dir(settings: Settings) -> Path:
    return settings.data_dir / "media"


def email_sized(data: bytes, width: int) -> tuple[bytes, str] | None:
    """(bytes, extension) of the picture at most `width` px wide, metadata stripped;
    None when Pillow cannot decode it (or it is a decompression bomb)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as original:
            if original.format == "GIF" and getattr(original, "is_animated", False):
                return data, "gif"
            picture = ImageOps.exif_transpose(original)  # upright, as the camera meant
            if picture.width > width:
                height = max(1, round(picture.height * width / picture.width))
                picture = picture.resize((width, height), Image.Resampling.LANCZOS)
            has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
            out = io.BytesIO()
            # Saved without exif=/icc_profile=/pnginfo=: Pillow writes no metadata then.
            if original.format == "PNG" or (original.format in ("WEBP", "GIF") and has_alpha):
                picture.save(out, "PNG", optimize=True)
                return out.getvalue(), "png"
            if original.format == "GIF":
                picture.save(out, "GIF", optimize=True)
                return out.getvalue(), "gif"
            picture.convert("RGB").save(
                out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True
            )
            return out.getvalue(), "jpg"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        log.warning("picture could not be read (%s); left out", exc)
        return None


#: (path, inode, size, mtime, ctime, width, media folder) -> its email-sized copy's name.
_PUBLISHED: dict[tuple[str, int, int, int, int, int, str], str] = {}


class Publisher:
    """Turns the picture addresses of one render into addresses a mail client loads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._done: dict[tuple[str, int], str] = {}

    def web_address(self, url: str, width: int = LEAD_WIDTH) -> str:
        """http(s) as it is; a local picture published at most `width` px wide; anything
        else "" (left out)."""
        if not url:
            return ""
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return url
        if scheme != "file":
            return ""
        if (url, width) not in self._done:
            self._done[url, width] = self._publish(Path(unquote(urlsplit(url).path)), width)
        return self._done[url, width]

    def _publish(self, path: Path, width: int) -> str:
        folder = media_dir(self.settings)
        # Each render publishes the same pictures again; resizing one took a third of a
        # render. The name published for this very file (path, inode, size, change
        # times) and width is kept while its copy is still in the folder: a file seen
        # unchanged passed the checks below already, and is not opened again.
        try:
            info = path.stat()
        except OSError:
            info = None
        if info is None or not S_ISREG(info.st_mode):
            log.warning("picture %s is not a PNG, JPEG, GIF or WebP file; left out", path)
            return ""
        seen = (
            str(path), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, width,
            str(folder),
        )  # fmt: skip
        name = _PUBLISHED.get(seen)
        if name is not None and (folder / name).exists():
            return f"{self.settings.base_url}/media/{name}"
        if not is_picture_file(path):
            log.warning("picture %s is not a PNG, JPEG, GIF or WebP file; left out", path)
            return ""
        if info.st_size > MAX_PICTURE_BYTES:
            log.warning(
                "picture %s is %d MB, over %d MB; left out",
                path,
                info.st_size // 2**20,
                MAX_PICTURE_BYTES // 2**20,
            )
            return ""
        sized = email_sized(path.read_bytes(), width)
        if sized is None:
            log.warning("picture %s could not be decoded; left out", path)
            return ""
        data, extension = sized
        name = f"{hashlib.blake2b(data, digest_size=16).hexdigest()}.{extension}"
        if len(_PUBLISHED) >= 1024:
            _PUBLISHED.clear()
        _PUBLISHED[seen] = name
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
