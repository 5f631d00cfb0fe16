"""`digest web`: the unsubscribe pages, the SendGrid event webhook and the newsroom's
editor and sends pages, served in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import Command, ConfigOption, session

app = typer.Typer()


@app.command(cls=Command)
def web(
    config_path: ConfigOption = Path("digest.toml"),
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; keep 127.0.0.1 behind a proxy on this machine."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the unsubscribe pages, the SendGrid event webhook and the newsroom's
    editor and sends pages (foreground).

    Every email links to [web] base_url in digest.toml: serve this there,
    behind a reverse proxy with HTTPS, or readers cannot leave (mail clients
    offer one-click unsubscribe, RFC 8058, only over HTTPS).

    /unsubscribe/TOKEN: GET shows the page, POST unsubscribes.
    POST /webhooks/sendgrid: needs SENDGRID_WEBHOOK_VERIFICATION_KEY.
    /editor (preview, pin, drop, reorder, approve) and /sends (read-only): need
    DIGEST_EDITOR_PASSWORD; sign in with your name and that password.
    GET /healthz: "ok". See docs/web.md. Ctrl-C or SIGTERM stops it.
    """
    import uvicorn

    from digest.environment import check_listen
    from digest.web import create_app

    with session(config_path) as (settings, store):
        check_listen(host, port)
        if not settings.base_url.startswith("https://"):
            sys.stderr.write(
                f"warning: [web] base_url {settings.base_url} is not https://; mail clients "
                "offer one-click unsubscribe (RFC 8058) only for HTTPS links\n"
            )
        # No access log: unsubscribe URLs carry tokens that name the reader and can
        # unsubscribe them; the app logs what it did, with the address masked.
        uvicorn.run(create_app(settings, store), host=host, port=port, access_log=False)
