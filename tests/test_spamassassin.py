"""Deliverability checked by a real filter: SpamAssassin (Debian's package, its own rules
only, no network tests, no Bayes) on the demo edition as the outbox writes it and as the
SMTP backend puts it on the wire. No rule may score above zero, except SpamAssassin's
informational rules (0.001 by its own convention) that every HTML newsletter with
pictures trips, listed below with their reason."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import need
from fakes.newsroom import DAY, EDITION, SECRET, copy_newsroom

from digest import config, jobs
from digest.models import Batch, Recipient
from digest.send import letter_for
from digest.send.smtp import SMTPBackend

#: Scored 0.001 by SpamAssassin itself ("informational"): they describe, not judge.
INFORMATIONAL = {
    "HTML_MESSAGE": "the message has an HTML part, as every newsletter does",
    "HTML_IMAGE_RATIO_02": "text-to-picture area; a digest of photographed stories has pictures",
    "HTML_IMAGE_RATIO_04": "as HTML_IMAGE_RATIO_02",
    "HTML_IMAGE_RATIO_06": "as HTML_IMAGE_RATIO_02",
    "HTML_IMAGE_RATIO_08": "as HTML_IMAGE_RATIO_02",
}
#: The rules the demo edition tripped before (issue 11), each fixed at its cause.
FIXED = {"MIME_QP_LONG_LINE", "HTML_FONT_LOW_CONTRAST", "LONGLN_LOW_CONTRAST", "WEIRD_PORT"}


@dataclass
class Wire:
    """An aiosmtpd handler that keeps each message's bytes as they came over SMTP."""

    raw: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content)
        return "250 OK"


@pytest.fixture(scope="module")
def mailed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, bytes]]:
    """One reader's copy through the outbox and through SMTP, of an edition whose links
    point at a newsroom's real web address (https, port 443), as a real send's do: the
    demo's `http://localhost:8000` is a development address, and SpamAssassin rightly
    notes links to an unusual port (WEIRD_PORT)."""
    root = tmp_path_factory.mktemp("spam")
    settings = config.load(copy_newsroom(root), env={"DIGEST_SECRET_KEY": SECRET})
    settings = replace(settings, base_url="https://news.example.org/digest")
    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    jobs.send(settings, store, EDITION)
    outbox = sorted((settings.delivery.outbox_dir / EDITION).glob("*.eml"))[0].read_bytes()
    letter = letter_for(settings, jobs.render_edition(settings, store, EDITION))
    store.close()
    wire = Wire()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(wire, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        backend = SMTPBackend("127.0.0.1", port, security="none")
        backend.push(letter, Batch(1, 1, [Recipient("ana.lopez@example.com", "Ana López")]))
        backend.close()
    finally:
        controller.stop()
    yield {"outbox": outbox, "smtp": wire.raw[0]}


def _scores(raw: bytes, home: Path) -> dict[str, float]:
    """SpamAssassin's rules and scores for one message: local tests only (-L), no Bayes."""
    done = subprocess.run(
        [
            "spamassassin", "-L", "-t",
            "--cf=use_bayes 0", "--cf=use_auto_whitelist 0",
            "--cf=add_header all Tests _TESTSSCORES(,)_",
        ],
        input=raw, capture_output=True, check=True, timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    checked = email.message_from_bytes(done.stdout, policy=email.policy.default)
    tests = "".join(str(checked["X-Spam-Tests"]).split())  # unfolded
    if tests == "none":
        return {}
    return {name: float(score) for name, score in (t.split("=") for t in tests.split(","))}


def test_no_rule_scores_the_mailed_copies(mailed: dict[str, bytes], tmp_path: Path) -> None:
    need(shutil.which("spamassassin") is not None, "spamassassin is not installed (apt)")
    with ThreadPoolExecutor(2) as pool:
        found = pool.map(lambda raw: _scores(raw, tmp_path), mailed.values())
        scored = dict(zip(mailed, found, strict=True))
    for path, rules in scored.items():
        assert "HTML_MESSAGE" in rules, (path, rules)  # it did read the HTML part
        assert not FIXED & rules.keys(), (path, rules)
        positive = {n: s for n, s in rules.items() if s > 0 and n not in INFORMATIONAL}
        assert positive == {}, f"{path}: {positive}"
        assert sum(rules.values()) < 0.01, (path, rules)


def test_encoded_body_lines_stay_within_rfc_2045(mailed: dict[str, bytes]) -> None:
    """Quoted-printable and base64 lines at most 76 characters (RFC 2045 6.7, 6.8);
    header lines may run to RFC 5322's 998."""
    for path, raw in mailed.items():
        head, _, body = raw.partition(b"\r\n\r\n")
        assert max(len(line) for line in body.split(b"\r\n")) <= 76, path
        assert max(len(line) for line in head.split(b"\r\n")) <= 998, path
