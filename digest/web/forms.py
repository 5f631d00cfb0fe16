"""Reading a POST body and its form fields, without python-multipart."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import default as default_policy
from urllib.parse import parse_qs

from starlette.requests import Request


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """A form body's fields.

    RFC 8058 section 3.1: the one-click POST SHOULD be multipart/form-data and MAY be
    application/x-www-form-urlencoded (what Gmail sends, per its sender guidelines,
    https://support.google.com/mail/answer/81126). The stdlib email parser reads
    the first, parse_qs the second.
    """
    if content_type.lower().startswith("multipart/form-data"):
        head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
        try:
            message = BytesParser(policy=default_policy).parsebytes(head + body)
            fields: dict[str, list[str]] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    fields.setdefault(name, []).append(str(part.get_content()).strip())
            return fields
        except (ValueError, LookupError, TypeError):
            return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
