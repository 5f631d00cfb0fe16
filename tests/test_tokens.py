"""Unsubscribe tokens (issue 8, case 7): one token, one spelling. Any other base64
spelling of the same bytes (padding, the standard alphabet, other trailing bits) is
refused, as are broken and forged tokens."""

from __future__ import annotations

import pytest

from digest.subscribers import token_address, unsubscribe_token, verify_token

SECRET = b"test-secret"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _a_token_with_dash_or_underscore() -> tuple[str, str]:
    for i in range(1000):
        address = f"reader{i}@example.org"
        token = unsubscribe_token(SECRET, address)
        if "-" in token or "_" in token:
            return address, token
    raise AssertionError("no token with - or _")


def _other_trailing_bits(part: str) -> str:
    """The same bytes with bits set that base64 leaves unused in the last character
    (RFC 4648 section 3.5): decoders that do not check them read the same bytes."""
    assert len(part) % 4 in (2, 3), part
    last = ALPHABET.index(part[-1])
    return part[:-1] + ALPHABET[last | 1]


ADDRESS, TOKEN = _a_token_with_dash_or_underscore()
ENCODED, SIGNATURE = TOKEN.split(".")


def test_the_canonical_spelling_is_accepted() -> None:
    assert verify_token(SECRET, TOKEN) == ADDRESS
    assert token_address(SECRET, TOKEN) == ADDRESS


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(f"{ENCODED}{'=' * (-len(ENCODED) % 4)}.{SIGNATURE}", id="padding"),
        pytest.param(f"{ENCODED}.{SIGNATURE}==", id="padded-signature"),
        pytest.param(TOKEN.replace("-", "+").replace("_", "/"), id="standard-alphabet"),
        pytest.param(f"{ENCODED}.{_other_trailing_bits(SIGNATURE)}", id="signature-trailing-bits"),
        pytest.param(f"{_other_trailing_bits(ENCODED)}.{SIGNATURE}", id="address-trailing-bits"),
        pytest.param(f"{ENCODED}.{SIGNATURE}.", id="a-second-dot"),
        pytest.param(f" {TOKEN}", id="leading-space"),
        pytest.param(f"{ENCODED}.{SIGNATURE[:-1]}", id="short-signature"),
        pytest.param(f"{ENCODED}.", id="no-signature"),
        pytest.param(ENCODED, id="no-dot"),
        pytest.param(unsubscribe_token(b"another key", ADDRESS), id="forged"),
    ],
)
def test_any_other_spelling_is_refused(spelling: str) -> None:
    assert spelling != TOKEN
    assert verify_token(SECRET, spelling) is None
    assert token_address(SECRET, spelling) is None
