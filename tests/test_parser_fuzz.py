"""Parser fuzzing (hypothesis, issue 10.6): every parser that reads untrusted input raises only its
documented error type, whatever it is fed.

- ``parse_authorization``: any text → an Authorization or ``AuthorizationFormatError``;
- ``parse_rfc3339``: any text → a datetime (that formats and parses back to the same instant) or
  ``ValueError``;
- JSON body validation, through the app in process: any bytes as the (correctly signed) body of
  representative operations, and any Authorization header value → a 4xx with a WeChat error body (or a
  2xx), never a 5xx or an exception;
- ``parse_notification`` (SDK): any body, correctly signed by the platform key so it reaches the JSON
  and decryption steps, and any resource (even correctly encrypted arbitrary plaintext) → a
  ``Notification`` or ``VerificationError``.

Example counts are modest in `make test`; WXPARTNER_FUZZ_EXAMPLES (as `make soak` sets it) raises them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from figures import record
from support import APIV3_KEY, SP_A, SUB_A, World, seed, sign_request
from wxpartner.client.errors import VerificationError
from wxpartner.client.keys import KeySet
from wxpartner.client.notifications import Notification, parse_notification
from wxpartner.protocol import authorization
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import (
    PARAM_NAMES,
    Authorization,
    AuthorizationFormatError,
    parse_authorization,
)
from wxpartner.protocol.crypto import aes_gcm_encrypt, new_gcm_nonce
from wxpartner.protocol.notification import encrypt_resource, sign_notification
from wxpartner.protocol.times import format_rfc3339, parse_rfc3339
from wxpartner.server.app import create_app
from wxpartner.server.settings import Settings
from wxpartner.store.db import Database, sqlite_url_for

FUZZ = int(os.environ.get("WXPARTNER_FUZZ_EXAMPLES", "0"))
PURE = settings(max_examples=max(150, 10 * FUZZ), deadline=None, suppress_health_check=list(HealthCheck))
APP = settings(max_examples=max(25, 2 * FUZZ), deadline=None, suppress_health_check=list(HealthCheck))

# Text as it arrives off the wire (any code point but lone surrogates) and the grammar's own alphabet.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
grammar_text = st.text(
    alphabet='WECHATPAY2-SHA256-RSA2048 ,="\t' + string.ascii_letters + "0123456789_", max_size=200
)


# --- Authorization ----------------------------------------------------------------------------------


def _parse_auth(value: str) -> Authorization | None:
    try:
        return parse_authorization(value)
    except AuthorizationFormatError:
        return None


@PURE
@given(st.one_of(any_text, grammar_text))
def test_authorization_parser_raises_only_its_format_error(value: str) -> None:
    auth = _parse_auth(value)
    if auth is not None:
        assert all(getattr(auth, name) for name in PARAM_NAMES)
        assert len(auth.nonce_str) <= 64 and auth.timestamp.isdigit()


@st.composite
def near_valid_headers(draw: st.DrawFn) -> str:
    """Valid parameter lists with one thing broken: names, quotes, separators, values, order."""
    names = list(PARAM_NAMES) + draw(
        st.lists(st.sampled_from([*PARAM_NAMES, "extra", "", "MCHID"]), max_size=2)
    )
    names = draw(st.permutations(names))
    value = st.one_of(st.text(string.printable, max_size=80), st.just(""), st.text(min_size=65, max_size=70))
    parts = []
    for name in names:
        quote = draw(st.sampled_from(['"', '"', "", "'"]))
        parts.append(f"{name}={quote}{draw(value)}{quote}")
    sep = draw(st.sampled_from([",", ", ", " ,", ",,", ";"]))
    scheme = draw(
        st.sampled_from(["WECHATPAY2-SHA256-RSA2048 ", "WECHATPAY2-SHA256-RSA2048", "wechatpay2 ", ""])
    )
    return scheme + sep.join(parts)


@PURE
@given(near_valid_headers())
def test_authorization_parser_on_near_valid_headers(value: str) -> None:
    _parse_auth(value)


@st.composite
def well_formed_headers(draw: st.DrawFn) -> str:
    """The five parameters in any order, double-quoted, with the spacing clients use: what the
    one-regex path takes, sometimes with an empty or out-of-range value the checks must refuse."""
    text = st.text(string.printable.replace('"', ""), max_size=70)
    digits = st.text("0123456789", min_size=1, max_size=21)
    parts = []
    for name in draw(st.permutations(PARAM_NAMES)):
        value = draw(st.one_of(st.just(""), digits if name == "timestamp" else text))
        parts.append(f'{name}="{value}"')
    scheme = draw(st.sampled_from(["", " "])) + "WECHATPAY2-SHA256-RSA2048 "
    return scheme + draw(st.sampled_from([",", ", ", ",\t"])).join(parts)


def _walked(value: str) -> Authorization | None:
    """The general piece-by-piece parse, without the one-regex path for well-formed headers."""
    try:
        return authorization._checked(authorization._parameters(value))
    except AuthorizationFormatError:
        return None


@PURE
@given(st.one_of(well_formed_headers(), near_valid_headers(), grammar_text, any_text))
def test_authorization_fast_path_agrees_with_the_general_parse(value: str) -> None:
    assert _parse_auth(value) == _walked(value)


# --- RFC 3339 ---------------------------------------------------------------------------------------

rfc3339_like = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)


@PURE
@given(st.one_of(any_text, rfc3339_like))
def test_rfc3339_parser_raises_only_value_error(value: str) -> None:
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        return
    assert parsed.tzinfo is not None
    try:
        again = parse_rfc3339(format_rfc3339(parsed, millis=True))
    except OverflowError:  # 0001-01-01T00:00:00+01:00 exists, but not in China time
        return
    assert abs((again - parsed).total_seconds()) < 0.001


# Whole-minute offsets (what RFC 3339 can carry); zoneinfo zones would add only generation time.
offsets = st.integers(min_value=-1439, max_value=1439).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@PURE
@given(st.datetimes(timezones=offsets))
def test_rfc3339_round_trip(value: dt.datetime) -> None:
    try:
        text = format_rfc3339(value)
    except OverflowError:
        return
    # compare instants: == between zones is False for DST-ambiguous wall times (PEP 495)
    assert parse_rfc3339(text).timestamp() == value.replace(microsecond=0).timestamp()


# --- JSON bodies and headers through the app -----------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_app(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("parser-fuzz")
    url = sqlite_url_for(data_dir)
    db = Database(url)
    seed(db, world)
    app = create_app(
        Settings(data_dir=str(data_dir), database_url=url, sandbox_token="fuzz", rate_limits=False), db
    )
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=True) as client:
        yield client
    db.dispose()
    record("parser fuzzing (in process)", requests=_COUNT["requests"], server_errors=_COUNT["5xx"])


_COUNT = {"requests": 0, "5xx": 0}
OPERATIONS = [
    ("POST", "/v3/webizpay/employees/WeBizPay_x/quota-cards"),
    ("POST", "/v3/webizpay/stores/entity-matches"),
    ("POST", "/v3/platsolution/ecommerce/recharge-employees"),
    ("DELETE", "/v3/webizpay/avail-mch-ranges/r1/merchant-identifiers/91110000710926094P"),
    ("POST", "/v3/apply4subject/applyment"),
    ("POST", "/v3/webizpay/bill/proof"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def steered_objects(draw: st.DrawFn) -> dict[str, Any]:
    """JSON objects with the operations' real field names, so values reach the field validators."""
    fields = [
        "sp_mchid", "sub_mchid", "card_template_id", "amount", "card_name", "out_card_no",
        "effective_end_time", "out_batch_id", "match_details", "sp_openid", "merchant_identifier",
        "business_code", "contact_info", "subject_info", "start_date", "end_date", "out_operation_id",
    ]  # fmt: skip
    keys = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    body = {key: draw(json_values) for key in keys}
    if draw(st.booleans()):
        body.update({"sp_mchid": SP_A, "sub_mchid": SUB_A})
    return body


bodies = st.one_of(
    st.binary(max_size=400),
    any_text.map(lambda t: t.encode("utf-8")),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
    steered_objects().map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
)


def _check_answer(status: int, content: bytes, what: str) -> None:
    _COUNT["requests"] += 1
    if status >= 500:
        _COUNT["5xx"] += 1
    assert status < 500, f"{what} -> {status} {content[:300]!r}"
    if status >= 400:
        err = json.loads(content)
        assert isinstance(err, dict) and set(err) <= {"code", "message", "detail"}, err
        assert err["code"] and err["message"], err


@APP
@given(op=st.sampled_from(OPERATIONS), body=bodies, json_type=st.booleans())
def test_any_body_gets_a_wechat_answer(
    fuzz_app: TestClient, world: World, op: tuple[str, str], body: bytes, json_type: bool
) -> None:
    method, path = op
    signed = sign_request(
        world.merchants[SP_A], method, path, body, wechatpay_serial=world.platform_pub.key_id
    )
    headers = dict(signed.headers)
    headers["Content-Type"] = "application/json" if json_type or not body else "text/plain"
    resp = fuzz_app.request(method, path, content=body or None, headers=headers)
    _check_answer(resp.status_code, resp.content, f"{method} {path} body={body[:80]!r}")


header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=400
)


@APP
@given(value=st.one_of(header_values, near_valid_headers().filter(lambda v: v.isprintable() and v.isascii())))
def test_any_authorization_header_gets_a_wechat_answer(
    fuzz_app: TestClient, world: World, value: str
) -> None:
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
    raw = (value.strip() or "x").encode("latin-1")  # any byte a socket could carry but CR/LF/NUL
    headers: dict[str, str | bytes] = {**signed.headers, "Authorization": raw}
    resp = fuzz_app.get("/v3/certificates", headers=headers)
    _check_answer(resp.status_code, resp.content, f"Authorization {value[:80]!r}")
    assert resp.status_code in (400, 401), resp.text


# --- callback notifications (SDK) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyset(world: World) -> KeySet:
    row = world.platform_pub
    return KeySet(public_key=row.public_key_pem, public_key_id=row.key_id)


_platform_keys: dict[str, Any] = {}


def _signed_callback(world: World, body: bytes) -> dict[str, str]:
    row = world.platform_pub
    if row.key_id not in _platform_keys:  # loading a PEM key checks it, which costs ~ms: once
        _platform_keys[row.key_id] = k.load_private_key(row.private_key_pem.encode())
    key = _platform_keys[row.key_id]
    return sign_notification(
        body, private_key=key, key_id=row.key_id, timestamp=int(time.time()), request_id="fuzz-req"
    ).headers


@st.composite
def resources(draw: st.DrawFn) -> Any:
    """Anything in `resource`: junk, near-valid fields, or a real encryption of arbitrary plaintext."""
    kind = draw(st.sampled_from(["junk", "fields", "encrypted-text", "encrypted-json"]))
    if kind == "junk":
        return draw(json_values)
    if kind == "fields":
        return {
            "algorithm": draw(st.sampled_from(["AEAD_AES_256_GCM", "AES", ""]) | json_values),
            "ciphertext": draw(any_text | json_values),
            "nonce": draw(any_text | json_values),
            "associated_data": draw(any_text | json_values),
            "original_type": draw(any_text | json_values),
        }
    if kind == "encrypted-text":
        nonce = new_gcm_nonce()
        text = draw(any_text)
        return {
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aes_gcm_encrypt(APIV3_KEY, nonce, "transaction", text),
            "nonce": nonce,
            "associated_data": "transaction",
            "original_type": "transaction",
        }
    plaintext = draw(st.dictionaries(any_text, json_values, max_size=5))
    return encrypt_resource(APIV3_KEY, plaintext, original_type=draw(any_text))


@st.composite
def callback_bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["bytes", "json", "envelope"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "json":
        return json.dumps(draw(json_values)).encode()
    envelope: dict[str, Any] = {
        "id": draw(any_text | json_values),
        "create_time": draw(any_text),
        "event_type": draw(
            st.sampled_from(["WEBIZPAY.AUTHORIZED", "WEBIZPAY.PAYMENTSUCCESS", "X"]) | any_text
        ),
        "resource_type": "encrypt-resource",
        "summary": draw(any_text),
        "resource": draw(resources()),
    }
    return json.dumps(envelope, ensure_ascii=False).encode()


@PURE
@given(body=callback_bodies())
def test_notification_parser_raises_only_verification_error(
    world: World, keyset: KeySet, body: bytes
) -> None:
    headers = _signed_callback(world, body)
    try:
        event = parse_notification(headers, body, keys=keyset, apiv3_key=APIV3_KEY)
    except VerificationError:
        return
    assert isinstance(event, Notification) and isinstance(event.plaintext, dict)


@APP
@given(
    body=callback_bodies(),
    header=st.sampled_from(["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce"]),
    value=any_text,
)
def test_notification_parser_with_tampered_headers(
    world: World, keyset: KeySet, body: bytes, header: str, value: str
) -> None:
    headers = {**_signed_callback(world, body), header: value}
    try:
        parse_notification(headers, body, keys=keyset, apiv3_key=APIV3_KEY)
    except VerificationError:
        return
