"""Canonical URLs: the same story reached through a newsletter, Facebook or a feed is one story."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

# Parameters that say how a reader arrived, not what they read.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "mtm_", "_hs")
_TRACKING_NAMES = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "ref", "ref_src", "cmpid", "ocid"}
)

SAFE_LINK_SCHEMES = ("http", "https")


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no tracking parameters."""
    parts = urlsplit(url.strip())
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _TRACKING_NAMES and not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    netloc = parts.netloc.lower()
    if parts.scheme == "http" and netloc.endswith(":80"):
        netloc = netloc[:-3]
    if parts.scheme == "https" and netloc.endswith(":443"):
        netloc = netloc[:-4]
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", urlencode(query), ""))


def is_safe_link(url: str) -> bool:
    """Only http(s) links may reach an email: no javascript:, data:, vbscript: ..."""
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in SAFE_LINK_SCHEMES


def safe_image_url(url: str, base: str) -> str:
    """The picture's absolute URL if an email may load it, else "".

    http(s) always; file: only when the source itself is a local file (the sample
    newsroom's pictures), never from a feed or page fetched over the network.
    javascript:, data: and the like never pass.
    """
    if not url or not url.strip():
        return ""
    absolute = urljoin(base, url.strip())
    scheme = urlsplit(absolute).scheme.lower()
    if scheme in SAFE_LINK_SCHEMES:
        return absolute
    if scheme == "file" and urlsplit(base).scheme.lower() == "file":
        return absolute
    return ""
