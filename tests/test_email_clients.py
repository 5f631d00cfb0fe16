"""Every client: doiuse-email (caniemail data, npm, pinned) on the demo edition's final
HTML, for Gmail, Outlook, Apple Mail and Yahoo, against tests/data/caniemail-accepted.txt.
A finding not in the list fails; so does a line of the list that matches nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

from conftest import ROOT, need

from digest import jobs
from digest.config import Settings

CLI = ROOT / "node_modules" / "doiuse-email" / "bin" / "cli.js"
ACCEPTED = Path(__file__).parent / "data" / "caniemail-accepted.txt"
CLIENTS = "gmail.*,outlook.*,apple-mail.*,yahoo.*"
FINDING = re.compile(r"^`(?P<feature>.+?)` is not supported by `(?P<client>[\w.-]+)`")


def accepted() -> dict[tuple[str, str], str]:
    """(feature, client) -> the reason it is accepted."""
    found: dict[tuple[str, str], str] = {}
    for number, line in enumerate(ACCEPTED.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        feature, clients, reason = (part.strip() for part in line.split("|", 2))
        assert feature.startswith("`") and reason, f"{ACCEPTED.name}:{number}: {line!r}"
        for client in clients.split(","):
            found[feature.strip("`"), client.strip()] = reason
    return found


def findings(html_file: Path) -> set[tuple[str, str]]:
    node = shutil.which("node")
    need(node is not None and CLI.exists(), "node and doiuse-email are needed (npm install)")
    out = subprocess.run(
        [node or "node", str(CLI), "--email-clients", CLIENTS, str(html_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    errors = json.loads(out.stdout)["errors"]
    unparsed = [e for e in errors if not FINDING.match(e)]
    assert unparsed == [], unparsed
    return {(m["feature"], m["client"]) for m in map(FINDING.match, errors) if m}


def test_the_email_uses_nothing_a_client_lacks_beyond_the_accepted_list(
    settings: Settings, tmp_path: Path
) -> None:
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    edition = jobs.draft(settings, store, date(2025, 12, 5))
    html_file, _ = jobs.write_edition(
        settings, jobs.render_edition(settings, store, edition.name), tmp_path
    )
    store.close()
    found = findings(html_file)
    known = accepted()
    new = sorted(f"`{feature}` in {client}" for feature, client in found - known.keys())
    assert new == [], f"new caniemail findings; fix them or add them with a reason: {new}"
    stale = sorted(f"`{feature}` in {client}" for feature, client in known.keys() - found)
    assert stale == [], f"{ACCEPTED.name} lists findings that are gone; remove them: {stale}"
    # Apple Mail supports everything the email uses.
    assert not any(client.startswith("apple-mail") for _, client in found)
