"""The SendGrid backend against our SendGrid-compatible server on 127.0.0.1.

What goes out (one personalization per recipient, substitutions, headers, custom
args, categories, asm, sandbox) and how each answer of the API is taken.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.newsroom import SECRET, copy_newsroom, drafted, letter, with_delivery
from fakes.sendgrid_server import DEFAULT_KEY, FakeSendGrid

from digest import config, jobs
from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Batch, Recipient, Subscriber
from digest.send.base import BatchRejected, Letter, SendStopped, TransientError
from digest.send.sendgrid import SendGridBackend
from digest.subscribers import verify_token

READERS = [
    Recipient("ana.lopez@example.com", "Ana Lopez"),
    Recipient("renee.obrien@example.com", "Renée O'Brien"),
    Recipient("smith@example.org", "Smith, Jo"),
    Recipient("noname@example.net", ""),
]


@pytest.fixture(scope="module")
def newsroom_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("sendgrid-newsroom")
    settings = config.load(
        copy_newsroom(root),
        env={"DIGEST_SECRET_KEY": SECRET, "SENDGRID_API_KEY": DEFAULT_KEY},
    )
    drafted(settings)
    return settings


@pytest.fixture(scope="module")
def the_letter(newsroom_settings: Settings) -> Letter:
    return letter(newsroom_settings)


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(keep_bodies=True) as server:
        yield server


def backend_for(fake: FakeSendGrid, **options: Any) -> SendGridBackend:
    return SendGridBackend(DEFAULT_KEY, host=fake.url, **options)


def push(fake: FakeSendGrid, letter: Letter, recipients: list[Recipient], **options: Any) -> Any:
    backend = backend_for(fake, **options)
    try:
        return backend.push(letter, Batch(send_id=1, number=7, recipients=recipients))
    finally:
        backend.close()


def test_one_personalization_per_recipient_with_their_own_values(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    result = push(fake, the_letter, READERS)
    assert result.status == 202 and result.message_id
    assert [d.email for d in fake.deliveries] == [r.email for r in READERS]
    assert {(d.edition, d.batch) for d in fake.deliveries} == {("2025-12-05", "7")}
    (body,) = fake.bodies
    personalizations = body["personalizations"]
    assert len(personalizations) == len(READERS)
    for reader, p in zip(READERS, personalizations, strict=True):
        # Nobody sees anybody else's address: one To, and no other reader anywhere in it.
        assert [t["email"] for t in p["to"]] == [reader.email]
        assert "cc" not in p and "bcc" not in p
        others = [r.email for r in READERS if r is not reader]
        assert not any(o in json.dumps(p) for o in others)
        subs = p["substitutions"]
        tokens = the_letter.tokens
        url = subs[tokens.unsubscribe_url]
        assert url.startswith("http://localhost:8000/unsubscribe/")
        assert verify_token(SECRET.encode(), url.rsplit("/", 1)[1]) == reader.email
        greeting = f"Good morning, {reader.name}." if reader.name else "Good morning."
        assert subs[tokens.greeting_text] == greeting
        assert p["headers"]["List-Unsubscribe"].startswith(f"<{url}>, <mailto:unsubscribe@")
        assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert p["custom_args"] == {"edition": "2025-12-05", "batch": "7"}
    # HTML-escaped where the token sits in HTML; the name quoted where SendGrid would split it.
    assert (
        personalizations[1]["substitutions"][the_letter.tokens.greeting]
        == "Good morning, Renée O&#x27;Brien."
    )
    assert personalizations[1]["to"][0]["name"] == "Renée O'Brien"
    assert personalizations[2]["to"][0]["name"] == '"Smith, Jo"'
    assert "name" not in personalizations[3]["to"][0]


def test_the_edition_goes_once_per_request_with_its_tokens_for_sendgrid_to_fill(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    push(fake, the_letter, READERS)
    (body,) = fake.bodies
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == the_letter.rendered.text
    assert body["content"][1]["value"] == the_letter.rendered.html
    assert the_letter.tokens.greeting in the_letter.rendered.html
    assert the_letter.tokens.unsubscribe_url in the_letter.rendered.text
    assert body["from"] == {"email": "digest@news.example.org", "name": "Gastineau Channel News"}
    assert body["reply_to"] == {"email": "newsroom@news.example.org"}
    assert body["subject"] == the_letter.subject
    assert body["categories"] == ["digest"]
    assert body["headers"]["X-Digest-Edition"] == "2025-12-05"
    assert body["headers"]["List-Id"].startswith("Gastineau Channel News daily digest")
    assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}
    assert "asm" not in body


def test_asm_group_sandbox_and_categories_come_from_the_settings(
    fake: FakeSendGrid, newsroom_settings: Settings
) -> None:
    settings = with_delivery(
        replace(newsroom_settings, env={**newsroom_settings.env, "SENDGRID_API_HOST": fake.url}),
        asm_group_id=4242,
        sandbox=True,
        categories=("digest", "morning", "digest"),
    )
    backend = SendGridBackend.from_settings(settings)
    result = backend.push(letter(settings), Batch(1, 1, READERS[:1]))
    backend.close()
    assert result.status == 200  # sandbox mode: validated, not sent
    (body,) = fake.bodies
    assert body["asm"] == {"group_id": 4242}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert body["categories"] == ["digest", "morning"]  # SendGrid wants them unique


def test_a_full_batch_of_1000_goes_in_one_request_and_1001_never_leaves(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    readers = [Recipient(f"r{i:04d}@example.org", f"Reader {i}") for i in range(1001)]
    push(fake, the_letter, readers[:1000])
    assert fake.requests == 1 and len(fake.deliveries) == 1000
    with pytest.raises(BatchRejected, match="at most 1000"):
        push(fake, the_letter, readers)
    assert fake.requests == 1


def test_a_huge_name_is_left_out_of_the_greeting_rather_than_break_the_batch(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    long = Recipient("long@example.org", "Ö" * 3000)  # 6,000 bytes, in two greetings
    push(fake, the_letter, [long, READERS[0]])
    (body,) = fake.bodies
    substitutions = body["personalizations"][0]["substitutions"]
    assert substitutions[the_letter.tokens.greeting_text] == "Good morning."
    assert len(fake.deliveries) == 2


def test_a_rejected_body_fails_the_batch_with_the_api_s_own_words(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    empty = replace(the_letter, rendered=replace(the_letter.rendered, text=""))
    with pytest.raises(BatchRejected) as caught:
        push(fake, empty, READERS[:1])
    assert caught.value.status == 400
    assert "content.0.value: The content value must be a string" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("500", TransientError, 500),
        ("503", TransientError, 503),
        ("413", BatchRejected, 413),
        ("403", SendStopped, 403),
        ("drop", TransientError, 0),
    ],
)
def test_each_answer_maps_to_what_the_ledger_does_next(
    fake: FakeSendGrid, the_letter: Letter, fault: str, error: type[Exception], status: int
) -> None:
    fake.fail_next(fault)
    with pytest.raises(error) as caught:
        push(fake, the_letter, READERS[:2])
    assert getattr(caught.value, "status", 0) == status
    assert fake.deliveries == []  # none of these delivered anyone


def test_429_says_how_long_until_the_rate_limit_resets(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    fake.faults.reset_in = 5
    fake.fail_next("429")
    with pytest.raises(TransientError) as caught:
        push(fake, the_letter, READERS[:1])
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 3.5 < caught.value.retry_after <= 6.0


def test_a_slow_answer_is_a_timeout(fake: FakeSendGrid, the_letter: Letter) -> None:
    fake.faults.slow_seconds = 1.5
    fake.fail_next("slow")
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"did not answer batch 7 within 0\.5s"):
        push(fake, the_letter, READERS[:1], timeout=0.5)
    assert time.monotonic() - started < 1.4


def test_nobody_listening_is_transient(the_letter: Letter) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = SendGridBackend(DEFAULT_KEY, host=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="connection to SendGrid failed"):
        backend.push(the_letter, Batch(1, 1, READERS[:1]))


def test_a_wrong_key_stops_the_send_and_the_key_is_never_repeated(
    fake: FakeSendGrid, the_letter: Letter
) -> None:
    backend = SendGridBackend("SG.wrong-secret-key", host=fake.url)
    with pytest.raises(SendStopped) as caught:
        backend.push(the_letter, Batch(1, 1, READERS[:1]))
    assert caught.value.status == 401
    assert "SENDGRID_API_KEY" in str(caught.value)
    assert "wrong-secret-key" not in str(caught.value)


def test_settings_errors_say_what_to_set(newsroom_settings: Settings, tmp_path: Path) -> None:
    no_key = replace(newsroom_settings, env={"DIGEST_SECRET_KEY": SECRET})
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set"):
        SendGridBackend.from_settings(no_key)
    bad_host = replace(
        newsroom_settings,
        env={"SENDGRID_API_KEY": "SG.k", "SENDGRID_API_HOST": "api.sendgrid.com"},
    )
    with pytest.raises(ConfigError, match=r"SENDGRID_API_HOST .* is not a URL") as e:
        SendGridBackend.from_settings(bad_host)
    assert "SG.k" not in str(e.value)


def test_a_dry_run_builds_every_request_and_sends_nothing(
    fake: FakeSendGrid, newsroom_settings: Settings, tmp_path: Path
) -> None:
    settings = with_delivery(
        replace(newsroom_settings, database_url=f"sqlite:///{tmp_path / 'dry.db'}"),
        batch_size=4,
    )
    drafted(settings)
    store = jobs.open_store(settings)
    store.subscribers.upsert_subscribers(
        [Subscriber(f"r{i}@example.org", f"R {i}") for i in range(10)]
    )
    dry = jobs.dry_run(settings, store, "2025-12-05", backend="sendgrid")
    assert (dry.recipients, dry.batches, dry.largest_batch) == (10, 3, 4)
    assert 60_000 < dry.largest_request < dry.request_bytes
    assert store.sends.get_send("2025-12-05") is None and fake.requests == 0
    store.close()


def test_a_notice_to_the_operators_carries_no_list_headers(settings: Settings) -> None:
    from digest.send import notice_for
    from digest.send.sendgrid import RequestWriter

    letter = notice_for(settings, "send held", "the 06:00 send was held")
    body = json.loads(RequestWriter(letter).body(Batch(0, 1, [Recipient("ops@example.org")])))
    (person,) = body["personalizations"]
    assert person["to"] == [{"email": "ops@example.org"}]
    assert person["headers"] == {}
    assert "categories" not in body or body["categories"] == []
    assert "List-Id" not in body["headers"]


def test_each_personalization_says_what_the_letter_says(the_letter: Letter) -> None:
    # The body is written from Letter.reader_parts through orjson; every reader's
    # substitutions and headers must be exactly Letter.substitutions and
    # list_unsubscribe, whatever the name holds (a comma, token syntax, HTML, other
    # scripts; a lone surrogate, which orjson refuses and the json module writes).
    from digest.send.sendgrid import RequestWriter, _display_name

    names = ["", "Renée O'Brien", "Smith, Jo", "%%greeting%% <b>&", "山田 太郎", "x\udc80y"]
    readers = [Recipient(f"r{i}@example.org", name) for i, name in enumerate(names)]
    body = json.loads(RequestWriter(the_letter).body(Batch(1, 4, readers)))
    for reader, person in zip(readers, body["personalizations"], strict=True):
        url = the_letter.unsubscribe_url(reader)
        to = {
            "email": reader.email,
            **({"name": _display_name(reader.name)} if reader.name else {}),
        }
        assert person["to"] == [to]
        assert person["substitutions"] == the_letter.substitutions(reader, url)
        assert person["headers"] == the_letter.list_unsubscribe(reader, url)
        assert person["custom_args"] == {"edition": the_letter.edition, "batch": "4"}
