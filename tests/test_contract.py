"""Contract: the Mail Send requests we build, checked by Stoplight Prism against Twilio's spec.

Prism (`prism mock`) serves SendGrid's official OpenAPI document
(../shared/specs/tsg_mail_v3.json) on 127.0.0.1 and validates every request
against it; a request that breaks the schema gets an `sl-violations` header
saying why. Installed by `npm install` (package.json: @stoplight/prism-cli).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import ROOT, SHARED, need
from fakes.newsroom import SECRET, copy_newsroom, drafted, letter

from digest import config
from digest.models import Batch, Recipient
from digest.send.sendgrid import RequestWriter

PRISM = ROOT / "node_modules" / ".bin" / "prism"
SPEC = SHARED / "specs" / "tsg_mail_v3.json"
HEADERS = {"Authorization": "Bearer SG.contract-test", "Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    need(PRISM.exists(), f"{PRISM} is missing: run `npm install` in the repository")
    need(SPEC.exists(), f"{SPEC} is missing (SendGrid's OpenAPI spec)")
    port = _free_port()
    process = subprocess.Popen(
        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"prism exited with {process.returncode}:\n{output}")
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("prism did not start listening within 60 s")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def request_body(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("contract-newsroom")
    settings = config.load(copy_newsroom(root), env={"DIGEST_SECRET_KEY": SECRET})
    drafted(settings)
    readers = [
        Recipient("ana.lopez@example.com", "Ana Lopez"),
        Recipient("renee.obrien@example.com", "Renée O'Brien"),
        Recipient("smith@example.org", "Smith, Jo"),
        Recipient("noname@example.net"),
    ]
    writer = RequestWriter(letter(settings), asm_group_id=12345, sandbox=True)
    return writer.body(Batch(send_id=1, number=3, recipients=readers))


def _post(prism: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{prism}/v3/mail/send", content=body, headers=HEADERS, timeout=30)


def test_our_request_for_a_batch_meets_sendgrid_s_spec(prism: str, request_body: bytes) -> None:
    response = _post(prism, request_body)
    assert "sl-violations" not in response.headers, response.headers["sl-violations"]
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        (lambda body: body["personalizations"][0].pop("to"), "to"),
        (lambda body: body.update(categories=[f"c{i}" for i in range(11)]), "categories"),
        (lambda body: body.pop("from"), "from"),
        (lambda body: body["asm"].update(group_id="twelve"), "group_id"),
    ],
)
def test_a_broken_request_is_caught_so_this_test_can_fail(
    prism: str, request_body: bytes, breakage: Any, field: str
) -> None:
    body = json.loads(request_body)
    breakage(body)
    response = _post(prism, json.dumps(body).encode())
    assert response.status_code >= 400
    assert field in response.headers.get("sl-violations", ""), response.headers
