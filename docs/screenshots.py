"""`make screenshots`: the demo edition as readers see it, and the editor's page, in the
Chromium the tests use (Debian's), for the README.

Writes docs/screenshots/: email-375-light.jpg, email-375-dark.jpg, email-600-light.jpg,
email-600-dark.jpg (the whole email at a phone's and at the email's own width, in the
reader's light and dark system schemes) and editor.jpg. The sample newsroom is copied to
a temporary folder, collected and drafted there, with `digest web` on 127.0.0.1 serving
its published pictures and the editor page, as a newsroom runs it.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PASSWORD = "screenshots"
DAY = date(2025, 12, 5)


def _serve(app: object) -> tuple[str, uvicorn.Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("digest web did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def main() -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit("Chromium is needed: apt-get install chromium")
    from digest import config, editor, jobs
    from digest.web import create_app

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        shutil.copytree(
            ROOT / "examples" / "sample-newsroom", work / "examples" / "sample-newsroom"
        )
        shutil.copy(ROOT / "digest.toml", work / "digest.toml")
        env = {"DIGEST_SECRET_KEY": "screenshots", "DIGEST_EDITOR_PASSWORD": PASSWORD}
        settings = config.load(work / "digest.toml", env=env)
        store = jobs.open_store(settings)
        site, server = _serve(create_app(settings, store))
        try:
            served = replace(settings, base_url=site)
            jobs.collect(served, store)
            jobs.draft(served, store, DAY)
            # The demo's editors' note, as `make demo` sets it.
            note = (work / "examples/sample-newsroom/editors-note.txt").read_text().strip()
            name = DAY.isoformat()
            editor.edit(served, store, name, [editor.Change("note", note)], "the demo")
            edition = jobs.load_edition(store, name)
            html, _ = jobs.write_edition(
                served, jobs.render_edition(served, store, edition.name), work / "out"
            )
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                for width in (375, 600):
                    for scheme in ("light", "dark"):
                        page = browser.new_page(
                            viewport={"width": width, "height": 900}, color_scheme=scheme
                        )
                        page.goto(html.as_uri(), wait_until="load")
                        shot = OUT / f"email-{width}-{scheme}.jpg"
                        page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=80)
                        page.close()
                        print(shot.relative_to(ROOT))
                context = browser.new_context(
                    viewport={"width": 1280, "height": 1000},
                    http_credentials={"username": "editor", "password": PASSWORD},
                )
                page = context.new_page()
                page.goto(f"{site}/editor/{edition.name}", wait_until="load")
                page.frame_locator("iframe").get_by_text("Good morning.").wait_for()
                shot = OUT / "editor.jpg"
                page.screenshot(path=str(shot), type="jpeg", quality=80)
                print(shot.relative_to(ROOT))
                browser.close()
        finally:
            server.should_exit = True
            store.close()


if __name__ == "__main__":
    sys.exit(main())
