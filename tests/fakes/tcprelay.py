"""A TCP relay: accept on one address, connect each client to another, copy both ways.

The multi-host test uses it where a service listens only on a loopback the other
hosts cannot reach: the machine's PostgreSQL (127.0.0.1:5432) from the host side of
the test's network, and the fake SendGrid server (127.0.0.1 inside its own network
namespace) from that namespace's address. Run alone:

    python -m tests.fakes.tcprelay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [LOG]

It prints `listening on HOST:PORT` once ready and relays until killed. With LOG, it
appends a line to that file for each connection it accepts (who connected), so a
test can tell when a client has started talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def serve(
    listen_host: str, listen_port: int, target_host: str, target_port: int, log: str = ""
) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if log:
            with open(log, "a") as handle:
                handle.write(f"{writer.get_extra_info('peername')[0]}\n")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                target_host, target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(client, listen_host, listen_port, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {listen_host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    listen_host, listen_port, target_host, target_port, *log = argv
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listen_host, int(listen_port), target_host, int(target_port), *log[:1]))


if __name__ == "__main__":
    main(sys.argv[1:])
