"""Property tests (hypothesis): sign -> verify round-trips over arbitrary requests, any one-byte change
breaks verification, and Authorization emit -> parse is the identity."""

from __future__ import annotations

import datetime as dt
import string

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization, parse_authorization
from wxpartner.protocol.messages import canonical_url, request_message, response_message
from wxpartner.protocol.signing import new_nonce, sign, verify
from wxpartner.protocol.times import parse_rfc3339

# One key for the module: generation is the slow part, the property is about messages.
KEY: rsa.RSAPrivateKey = k.generate_private_key()
PUBLIC = KEY.public_key()

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])
_path_chars = string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/"
paths = st.lists(st.text(alphabet=_path_chars, min_size=1, max_size=20), min_size=1, max_size=5).map(
    lambda parts: "/v3/" + "/".join(parts)
)
queries = st.one_of(st.just(""), st.text(alphabet=_path_chars + "?=&", min_size=1, max_size=60))
# Any BMP text (the spec's UTF-8 range), including newlines, quotes and CJK.
bodies = st.text(alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=300)
timestamps = st.integers(min_value=0, max_value=2**40).map(str)
nonces = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=64)


@FAST
@given(method=methods, path=paths, query=queries, ts=timestamps, nonce=nonces, body=bodies)
def test_sign_verify_round_trip(method: str, path: str, query: str, ts: str, nonce: str, body: str) -> None:
    url = canonical_url(path, query)
    message = request_message(method, url, ts, nonce, body.encode("utf-8"))
    assert message == f"{method}\n{url}\n{ts}\n{nonce}\n{body}\n".encode()
    assert verify(PUBLIC, message, sign(KEY, message))


@FAST
@given(
    body=bodies,
    ts=timestamps,
    nonce=nonces,
    data=st.data(),
)
def test_any_one_byte_change_breaks_verification(body: str, ts: str, nonce: str, data: st.DataObject) -> None:
    message = request_message("POST", "/v3/x?a=1", ts, nonce, body.encode("utf-8"))
    signature = sign(KEY, message)
    index = data.draw(st.integers(min_value=0, max_value=len(message) - 1), label="index")
    delta = data.draw(st.integers(min_value=1, max_value=255), label="delta")
    changed = bytearray(message)
    changed[index] = (changed[index] + delta) % 256
    assert not verify(PUBLIC, bytes(changed), signature)


@FAST
@given(ts=timestamps, nonce=nonces, body=st.binary(max_size=200), data=st.data())
def test_response_message_one_byte_change_breaks(
    ts: str, nonce: str, body: bytes, data: st.DataObject
) -> None:
    message = response_message(ts, nonce, body)
    assert message == ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
    signature = sign(KEY, message)
    assert verify(PUBLIC, message, signature)
    index = data.draw(st.integers(min_value=0, max_value=len(message) - 1))
    changed = bytearray(message)
    changed[index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    assert not verify(PUBLIC, bytes(changed), signature)


@FAST
@given(data=st.data())
def test_one_character_change_of_signature_fails(data: st.DataObject) -> None:
    message = b"GET\n/v3/certificates\n1\nn\n\n"
    signature = sign(KEY, message)
    # The last quad is 'X?==': the second char's low 4 bits are not data, so stop before it.
    index = data.draw(st.integers(min_value=0, max_value=len(signature) - 4))
    replacement = data.draw(
        st.sampled_from(string.ascii_letters + string.digits + "+/").filter(lambda c: c != signature[index])
    )
    assert not verify(PUBLIC, message, signature[:index] + replacement + signature[index + 1 :])


# Values the grammar allows: non-empty, no double quote (the SDKs never emit one).
values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"'),
    min_size=1,
    max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(
    mchid=values,
    nonce=values,
    ts=st.integers(min_value=0, max_value=2**40).map(str),
    serial=values,
    signature=values,
    order=st.permutations(["mchid", "nonce_str", "timestamp", "serial_no", "signature"]),
    spaced=st.booleans(),
)
def test_authorization_emit_parse_identity(
    mchid: str, nonce: str, ts: str, serial: str, signature: str, order: list[str], spaced: bool
) -> None:
    auth = Authorization(mchid, nonce, ts, serial, signature)
    assert parse_authorization(auth.header_value()) == auth
    sep = ", " if spaced else ","
    reordered = "WECHATPAY2-SHA256-RSA2048 " + sep.join(f'{name}="{getattr(auth, name)}"' for name in order)
    assert parse_authorization(reordered) == auth


@pytest.mark.parametrize("body", ["", "\n", "中文", '{"a":"\\u4e2d"}', "\r\n"])
def test_body_bytes_are_signed_unchanged(body: str) -> None:
    message = request_message("POST", "/v3/x", "1", "n", body.encode())
    assert message.endswith(body.encode() + b"\n")
    assert verify(PUBLIC, message, sign(KEY, message))


def test_nonces_are_alphanumeric_and_uniform() -> None:
    """32 characters of [0-9A-Za-z], every character equally likely: a chi-square test over 20,000
    nonces (61 degrees of freedom; 130 is beyond the 99.9999th percentile). Mapping every random byte
    by ``% 62`` would favour eight letters by a quarter and score in the thousands."""
    alphabet = string.ascii_letters + string.digits
    counts = dict.fromkeys(alphabet, 0)
    for _ in range(20_000):
        nonce = new_nonce()
        assert len(nonce) == 32
        for ch in nonce:
            counts[ch] += 1  # a character outside the alphabet is a KeyError
    expected = 20_000 * 32 / len(alphabet)
    chi_square = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi_square < 130, chi_square
    assert len(new_nonce(64)) == 64 and len(new_nonce(1)) == 1


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    offset=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    digits=st.integers(min_value=0, max_value=9),
    zulu=st.booleans(),
)
def test_rfc3339_parse_agrees_with_the_standard_library(
    moment: dt.datetime, offset: int, digits: int, zulu: bool
) -> None:
    tz = dt.UTC if zulu else dt.timezone(dt.timedelta(minutes=offset))
    value = moment.replace(tzinfo=tz)
    text = value.isoformat(timespec="seconds").replace("+00:00", "Z" if zulu else "+00:00")
    fraction = f"{value.microsecond:06d}{'0' * 3}"[:digits]
    if fraction:
        text = text[:19] + "." + fraction + text[19:]
    parsed = parse_rfc3339(text)
    assert parsed == value.replace(microsecond=int((fraction + "000000")[:6]) if fraction else 0)
    assert parsed.utcoffset() == tz.utcoffset(None)  # same instant *and* the same offset kept


@pytest.mark.parametrize(
    "text",
    [
        "2025-05-20T13:29:35+24:00",  # offsets must stay within ±23:59 (the zone cache sees each once)
        "2025-05-20T13:29:35-07:60",
        "2025-05-20T13:29:35",  # no offset
        "2025-05-20 13:29:35+08:00",
        "2025-02-30T13:29:35+08:00",
        "2025-05-20T24:00:00+08:00",
    ],
)
def test_rfc3339_refusals(text: str) -> None:
    for _ in range(2):  # the second time through the zone cache
        with pytest.raises(ValueError):
            parse_rfc3339(text)
