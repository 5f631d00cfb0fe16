"""One fetch for every collector: a source's bytes from a file or an http(s) URL, bounded.

Feeds, CMS exports, article pages and page-view CSVs all come through `Fetcher.fetch`,
so each has the same limits (`[limits]` in digest.toml, `config.Limits`):

- `fetch_max_bytes`: a response is read in chunks and counted after content-decoding,
  so a gzip bomb is cut once its decoded size passes the cap, never inflated whole. A
  Content-Length over the cap is refused before the body is read; a local file is
  sized before it is read.
- `fetch_timeout`: to connect, and between two reads.
- `source_deadline`: the wall-clock time one source may take, its redirects, TLS
  handshake, headers and body included. Every socket operation waits at most what is
  left of it, so a server that drips a byte every few seconds, in its body or in its
  headers, is cut when the time is up. (Name lookup is the system resolver's, with its
  own timeouts.)
- `collect_deadline`: once it has passed, a source not yet started is not started.
- at most `MAX_REDIRECTS` redirects, each one's body left unread.

Over a limit is an InputError naming the source, the limit and its setting; the
collector makes it one line and goes on with the next source.

One Fetcher, and so one httpx.Client and one TLS context, serves a whole collect:
building a TLS context (loading the CA bundle) for every feed was 56% of collect's CPU.
It is shared by the collect's threads (collect_all reads sources at once): each thread
has its own source deadline, the pool holds `[limits] collect_concurrency` connections.

Conditional GET: given the `Validators` (ETag, Last-Modified) a source answered with
last time, the Fetcher asks again with If-None-Match / If-Modified-Since, and a 304 is
`NotModified`: nothing to read, nothing to parse. What each source answered this time
is in `answered`, for the collect to keep once the source's stories are saved.
"""

from __future__ import annotations

import math
import os
import ssl
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

import httpcore
import httpx

from digest.config import Limits
from digest.errors import InputError

USER_AGENT = "digest/0.1 (+https://github.com/; daily newsletter collector)"
# Browsers stop at 20 (Chrome, Firefox), httpx too; a feed moved twice is common, ten
# hops is a loop or a trap.
MAX_REDIRECTS = 10
# The two codings every server offers (RFC 9110 section 8.4.1), decoded here with a bound
# on the output (zlib's max_length). httpx's own decoders inflate each network chunk
# whole: 64 KB of gzip is up to 64 MB, and with brotli installed far more.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS
# What can go wrong on the wire: httpx's errors, and httpcore's, which the transport
# below passes through unmapped (httpx maps them in its own transport, privately).
_NETWORK_ERRORS = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


class Fetched(NamedTuple):
    """A source's bytes, and the URL its relative links resolve against."""

    data: bytes
    base: str


class Validators(NamedTuple):
    """What a server said identifies the version it sent: sent back next time."""

    etag: str = ""
    last_modified: str = ""


class NotModified(Exception):
    """The server says the source has not changed since it gave these validators."""


def fetch(source: str, fetcher: Fetcher | None = None) -> Fetched:
    """The source through `fetcher`, or through a Fetcher of its own with default limits."""
    if fetcher is not None:
        return fetcher.fetch(source)
    with Fetcher() as own:
        return own.fetch(source)


def size_text(size: int) -> str:
    """20_000_000 as "20 MB": decimal units, as the setting is written."""
    for unit, name in ((1_000_000, "MB"), (1_000, "kB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit:,} {name}"
    return f"{size:,} bytes"


class Fetcher:
    """One collect's reader of sources: its limits, its clock and its HTTP client."""

    def __init__(
        self, limits: Limits | None = None, validators: Mapping[str, Validators] | None = None
    ) -> None:
        """The collect's clock starts now: `collect_deadline` counts from here."""
        self.limits = limits or Limits()
        self._collect_ends = time.monotonic() + self.limits.collect_deadline
        self._deadline = threading.local()  # .ends: while this thread reads an http(s) source
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._validators = dict(validators or {})
        #: The validators each http(s) source answered with in this collect.
        self.answered: dict[str, Validators] = {}

    @property
    def _source_ends(self) -> float:
        return getattr(self._deadline, "ends", math.inf)

    @_source_ends.setter
    def _source_ends(self, value: float) -> None:
        self._deadline.ends = value

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def check_collect_deadline(self, source: str) -> None:
        """Raise InputError, the source's one line, once the collect deadline has passed."""
        if time.monotonic() >= self._collect_ends:
            raise InputError(
                f"{source}: skipped: the collect deadline of {self.limits.collect_deadline:g} s "
                "([limits] collect_deadline) passed"
            )

    def fetch(self, source: str) -> Fetched:
        """The bytes of a feed, export or page, within every limit, or InputError saying why not."""
        self.check_collect_deadline(source)
        if urlsplit(source).scheme in ("http", "https"):
            return self._download(source)
        return self._read_file(source)

    # -- local files --------------------------------------------------------------------

    def _read_file(self, source: str) -> Fetched:
        path = Path(source.removeprefix("file://"))
        cap = self.limits.fetch_max_bytes
        try:
            # stat first: opening a FIFO would wait for a writer, and /dev/zero never ends.
            if not stat.S_ISREG(path.stat().st_mode):
                raise InputError(f"{source}: not a file (a folder or a device); check the path")
            with path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size > cap:
                    raise self._over_cap(source, "file")
                # cap + 1: a file that grew since, or one whose size the system does not
                # know (/proc), is still cut.
                data = handle.read(cap + 1)
        except OSError as exc:
            raise InputError(f"{source}: cannot read ({exc.strerror}); check the path") from None
        if len(data) > cap:
            raise self._over_cap(source, "file")
        return Fetched(data, path.resolve().as_uri())

    # -- http(s) --------------------------------------------------------------------------

    def _download(self, url: str) -> Fetched:
        self._source_ends = time.monotonic() + self.limits.source_deadline
        try:
            return self._follow(url)
        except _NETWORK_ERRORS as exc:
            if self._source_time_left() <= 0:
                raise self._too_slow(url) from None
            reason = str(exc) or type(exc).__name__
            raise InputError(f"{url}: could not fetch ({reason}); check the URL") from None
        finally:
            self._source_ends = math.inf

    def _follow(self, url: str) -> Fetched:
        """GET with redirects followed by hand: httpx reads a redirect's body whole."""
        client = self._http_client()
        request = client.build_request("GET", url, headers=_conditional(self._validators.get(url)))
        for _ in range(MAX_REDIRECTS + 1):
            response = client.send(request, stream=True)
            try:
                if response.next_request is None:
                    return self._body(url, response)
                request = response.next_request
            finally:
                response.close()
            if request.url.scheme not in ("http", "https"):
                raise InputError(f"{url}: redirected to a non-http(s) address; check the URL")
        raise InputError(f"{url}: more than {MAX_REDIRECTS} redirects; check the URL")

    def _body(self, url: str, response: httpx.Response) -> Fetched:
        if response.status_code == 304 and url in self._validators:
            raise NotModified(url)
        if response.status_code >= 400:
            raise InputError(f"{url}: HTTP {response.status_code}; check the URL")
        answered = Validators(
            response.headers.get("etag", "")[:500], response.headers.get("last-modified", "")[:100]
        )
        if any(answered):
            self.answered[url] = answered
        cap = self.limits.fetch_max_bytes
        coding = response.headers.get("content-encoding", "").strip().lower()
        declared = response.headers.get("content-length", "").strip()
        # Content-Length counts the encoded bytes; only an unencoded one is the body's size.
        if coding in ("", "identity") and declared.isdigit() and int(declared) > cap:
            raise self._over_cap(url, "response")
        decoder = _decoder(url, coding)
        body = bytearray()
        try:
            for raw in response.iter_raw():
                body += decoder.decode(raw, cap + 1 - len(body))
                if len(body) > cap:
                    raise self._over_cap(url, "response")
                if self._source_time_left() <= 0:
                    raise self._too_slow(url)
            body += decoder.decode(b"", cap + 1 - len(body), final=True)
        except zlib.error as exc:
            raise InputError(
                f"{url}: its {coding} content is broken ({exc}); check the URL"
            ) from None
        if len(body) > cap:
            raise self._over_cap(url, "response")
        return Fetched(bytes(body), str(response.url))

    def _http_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    transport=_DeadlineTransport(
                        self._bounded_timeout, self.limits.collect_concurrency
                    ),
                    timeout=httpx.Timeout(self.limits.fetch_timeout),
                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
                    follow_redirects=False,
                )
            return self._client

    def _source_time_left(self) -> float:
        return self._source_ends - time.monotonic()

    def _bounded_timeout(self, timeout: float | None) -> float | None:
        """A socket operation's timeout, cut to what is left of the source's deadline."""
        left = self._source_time_left()
        if left <= 0:
            raise httpcore.ReadTimeout("the source deadline passed")
        if math.isinf(left):  # no source being read: the pool closing a connection
            return timeout
        return left if timeout is None else min(timeout, left)

    # -- messages -------------------------------------------------------------------------

    def _over_cap(self, source: str, what: str) -> InputError:
        return InputError(
            f"{source}: {what} is over {size_text(self.limits.fetch_max_bytes)} "
            "([limits] fetch_max_bytes); skipped"
        )

    def _too_slow(self, source: str) -> InputError:
        return InputError(
            f"{source}: not read within the source deadline of {self.limits.source_deadline:g} s "
            "([limits] source_deadline); skipped"
        )


def _conditional(validators: Validators | None) -> dict[str, str]:
    """The headers that ask for the source only if it changed since `validators`."""
    if validators is None:
        return {}
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


# -- content decoding -----------------------------------------------------------------------


class _Decoder(Protocol):
    def decode(self, data: bytes, room: int, final: bool = False) -> bytes: ...


class _Identity:
    def decode(self, data: bytes, room: int, final: bool = False) -> bytes:
        return data


class _Inflate:
    """gzip or deflate, never more than `room` bytes out at a time (the caller's cap + 1)."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._started = False

    def decode(self, data: bytes, room: int, final: bool = False) -> bytes:
        out = bytearray()
        try:
            while data and len(out) < room:
                out += self._inflate.decompress(data, room - len(out))
                data = self._inflate.unconsumed_tail
                self._started = True
        except zlib.error:
            # "deflate" is meant to be zlib-wrapped (RFC 9110 section 8.4.1.2), but some
            # servers send it raw; httpx and browsers accept both, told by the first bytes.
            if self._started or self._wbits != _ZLIB:
                raise
            self._wbits = _RAW_DEFLATE
            self._inflate = zlib.decompressobj(_RAW_DEFLATE)
            return self.decode(data, room, final)
        if final and len(out) < room:
            out += self._inflate.flush()
        return bytes(out)


def _decoder(url: str, coding: str) -> _Decoder:
    if coding in ("", "identity"):
        return _Identity()
    if coding in ("gzip", "x-gzip"):
        return _Inflate(_GZIP)
    if coding == "deflate":
        return _Inflate(_ZLIB)
    raise InputError(
        f"{url}: the server sent content-encoding {coding[:40]!r}, which digest does not "
        f"read (it asks for {ACCEPT_ENCODING}); check the URL"
    )


# -- httpx over httpcore, with the deadline in every socket operation ----------------------
#
# httpx's timeouts are per operation (https://www.python-httpx.org/advanced/timeouts/):
# a server that answers each read just in time holds a request forever. httpcore lets a
# network backend be plugged in (https://www.encode.io/httpcore/network-backends/); this
# one asks the Fetcher, before each connect, TLS handshake, read and write, how long it
# may wait. httpx.HTTPTransport builds its httpcore pool without a way to pass one in,
# hence this small transport.

_Timeout = Callable[[float | None], float | None]


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, bound: _Timeout) -> None:
        self._stream = stream
        self._bound = bound

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._bound(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._bound(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, self._bound(timeout))
        return _BoundedStream(tls, self._bound)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self, bound: _Timeout) -> None:
        self._sync = httpcore.SyncBackend()
        self._bound = bound

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._sync.connect_tcp(
            host, port, self._bound(timeout), local_address, socket_options
        )
        return _BoundedStream(stream, self._bound)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._sync.connect_unix_socket(path, self._bound(timeout), socket_options)
        return _BoundedStream(stream, self._bound)

    def sleep(self, seconds: float) -> None:
        self._sync.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _DeadlineTransport(httpx.BaseTransport):
    def __init__(self, bound: _Timeout, connections: int) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_BoundedBackend(bound),
            max_connections=connections,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        assert isinstance(request.stream, httpx.SyncByteStream)  # a sync Client's request
        response = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
