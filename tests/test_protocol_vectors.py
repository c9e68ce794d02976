"""wxpartner.protocol against the spec's vectors (protocol.md §3, §4, §5.3, §8, §9.3, §11)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from support import World, inconsistent_private_key_pem
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization, AuthorizationFormatError, parse_authorization
from wxpartner.protocol.crypto import (
    DecryptionError,
    aes_gcm_decrypt,
    aes_gcm_encrypt,
    new_gcm_nonce,
    oaep_decrypt,
    oaep_encrypt,
)
from wxpartner.protocol.errors import CATALOGUE, ApiError, param_error, status_for
from wxpartner.protocol.messages import canonical_url, request_message, response_message
from wxpartner.protocol.notification import decrypt_resource, encrypt_resource, sign_notification
from wxpartner.protocol.signing import new_hex_nonce, new_nonce, sign, verify
from wxpartner.protocol.times import china_time_text, format_rfc3339, parse_rfc3339

TS = "1747280000"
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
CANCEL_PATH = "/v3/webizpay/employees/WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c/quota-cards/1068019671702503425/cancel"
CANCEL_BODY = '{"sp_mchid":"12341234","sub_mchid":"43214321","reason":"商户主动作废"}'
RESPONSE_BODY = (
    '{"sp_mchid":"12341234","sub_mchid":"43214321","employee_id":"WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c",'
    '"card_no":"1068019671702503425","card_state":"DISABLED","card_disabled_time":"2025-05-15T11:33:20+08:00"}'
)
GCM_KEY = "0123456789abcdef0123456789abcdef"
GCM_NONCE = "3uO7Ph5XgW1q"
GCM_AAD = "webizpay"
GCM_PLAINTEXT = (
    '{"sp_mchid":"12341234","sub_mchid":"43214321","user_id":"employee123","authorization_state":"REVOKED",'
    '"authorization_revoked_time":"2025-05-15T11:33:20+08:00","reason":"企业发起"}'
)
GCM_CIPHERTEXT = (
    "xiEWfV8hiDNQ0bS4crOx61NKNuHrOAUlcbMpTvTopyp/mNJO9K+krKG26gjYN0Zjeut0IPDWhGEuOqAsWGc9BVlB3Fa9hoY6zaklgprUR2BLeD"
    "T23n2174hTLOrc9tOFdTDd0ESDLxfr91UI6Y2IbkB4S2bFwBS0kQI3gkZDo6UbJesZXDFWTwvveLIO/BNWJFJjVEf3afnqYxRRE0pUPLjJMv7"
    "pbo+ExhiJB7OQZ/Qtuwh6vIFxgI3pG/XR1yFt4+vSkMEhsg=="
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- §11.1-11.4: the exact messages -------------------------------------------------------------


def test_11_1_request_message_with_body() -> None:
    assert len(CANCEL_BODY.encode()) == 76
    msg = request_message("POST", CANCEL_PATH, TS, NONCE, CANCEL_BODY.encode())
    assert msg == f"POST\n{CANCEL_PATH}\n{TS}\n{NONCE}\n{CANCEL_BODY}\n".encode()
    assert len(msg) == 234
    assert sha(msg) == "010cd0e3db749920e972dcbee592e7a7f2ff1fcab3dc26b50a5ef5cdeee6bed0"
    # str and bytes bodies sign the same bytes
    assert request_message("POST", CANCEL_PATH, TS, NONCE, CANCEL_BODY) == msg


def test_11_2_query_kept_as_sent_and_empty_body() -> None:
    url = canonical_url(
        "/v3/webizpay/users/employee123/authorization-state", "sp_mchid=12341234&sub_mchid=43214321"
    )
    msg = request_message("GET", url, TS, NONCE, b"")
    assert msg.endswith(b"\n\n")
    assert len(msg) == 137
    assert sha(msg) == "26481e15ce4a58718c33a18174e66186b2f889937f4eead7c3cb16b0f1ef2ada"


def test_11_3_bodyless_post() -> None:
    msg = request_message("POST", "/v3/apply4subject/applyment/1900013511_10000/cancel", TS, NONCE, b"")
    assert len(msg) == 102
    assert sha(msg) == "c0ae8379cd67901d4e1aa8d7d0c18c89cc8df70f0572aaf7284146d3db66407c"


def test_11_4_response_message_and_empty_204() -> None:
    msg = response_message("1747280001", "c5ac7061fccab6bf3e254dcf98995b8c", RESPONSE_BODY.encode())
    assert len(msg) == 258
    assert sha(msg) == "c1e750e46b27249690a25b2532798bd3cb98ba4b61dd1a06b947ba8618beea18"
    empty = response_message("1747280001", "c5ac7061fccab6bf3e254dcf98995b8c", b"")
    assert empty == b"1747280001\nc5ac7061fccab6bf3e254dcf98995b8c\n\n"
    assert len(empty) == 45
    assert sha(empty) == "17cc1f9e4f55ec84aaa458f828e6432ae42a67a66199bad17fc688681426eec0"


def test_canonical_url_no_question_mark_without_query_and_raw_encoding_kept() -> None:
    assert canonical_url("/v3/certificates", "") == "/v3/certificates"
    assert canonical_url("/v3/certificates", None) == "/v3/certificates"
    assert canonical_url("/v3/a%2Fb/c%20d", "z=1&a=%E4%B8%AD") == "/v3/a%2Fb/c%20d?z=1&a=%E4%B8%AD"


def test_body_ending_in_newline_gets_another() -> None:
    msg = request_message("POST", "/v3/x", TS, NONCE, b'{"a":1}\n')
    assert msg.endswith(b'{"a":1}\n\n')
    assert response_message("1", "n", b"x\n") == b"1\nn\nx\n\n"


def test_11_signature_is_344_base64_chars_and_verifies(world: World) -> None:
    key = world.merchants[next(iter(world.merchants))].private_key
    msg = request_message("POST", CANCEL_PATH, TS, NONCE, CANCEL_BODY.encode())
    signature = sign(key, msg)
    assert len(signature) == 344 and "\n" not in signature
    assert len(base64.b64decode(signature, validate=True)) == 256
    assert verify(key.public_key(), msg, signature)
    assert not verify(key.public_key(), msg + b"x", signature)
    assert not verify(key.public_key(), msg, "not base64!!")
    assert not verify(key.public_key(), msg, signature[:-4])


# --- §4: Authorization emit and parse ----------------------------------------------------------

SIG = "A" * 340 + "AA=="
AUTH = Authorization("1900000001", NONCE, TS, "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C", SIG)
# The issue of a header without key="value" pairs (a bare "expected" also matched the scheme and
# parameter refusals).
NO_PARAMETERS = "expected 'WECHATPAY2-SHA256-RSA2048 key=\"value\",...'"


def test_authorization_emit_in_sdk_order() -> None:
    assert AUTH.header_value() == (
        f'WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="{NONCE}",timestamp="{TS}",'
        f'serial_no="1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",signature="{SIG}"'
    )
    assert parse_authorization(AUTH.header_value()) == AUTH


@pytest.mark.parametrize(
    "order",
    [
        ("mchid", "nonce_str", "signature", "timestamp", "serial_no"),  # official docs order
        ("mchid", "serial_no", "timestamp", "nonce_str", "signature"),  # wechatpay-axios-plugin order
        ("signature", "serial_no", "timestamp", "nonce_str", "mchid"),
    ],
)
def test_authorization_any_order(order: tuple[str, ...]) -> None:
    params = ",".join(f'{name}="{getattr(AUTH, name)}"' for name in order)
    assert parse_authorization(f"WECHATPAY2-SHA256-RSA2048 {params}") == AUTH


def test_authorization_tolerates_space_after_commas() -> None:
    value = AUTH.header_value().replace('",', '", ')
    assert parse_authorization(value) == AUTH


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", NO_PARAMETERS),
        ("WECHATPAY2-SHA256-RSA2048", NO_PARAMETERS),
        ("WECHATPAY2-SHA256-RSA2048   ", NO_PARAMETERS),
        (
            AUTH.header_value().replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3"),
            "unsupported scheme",
        ),
        (AUTH.header_value().replace("WECHATPAY2-SHA256-RSA2048", "Bearer"), "unsupported scheme"),
        (AUTH.header_value().replace('mchid="1900000001"', "mchid=1900000001"), "malformed parameter"),
        (AUTH.header_value().replace('mchid="1900000001"', "mchid='1900000001'"), "malformed parameter"),
        (AUTH.header_value() + f',nonce_str="{NONCE}"', "duplicate parameter 'nonce_str'"),
        (AUTH.header_value() + ',extra="1"', "unknown parameter 'extra'"),
        (AUTH.header_value().replace('mchid="1900000001"', 'mchid=""'), "empty parameter 'mchid'"),
        (AUTH.header_value().replace(f',timestamp="{TS}"', ""), "missing parameter(s): timestamp"),
        (AUTH.header_value().replace(f'timestamp="{TS}"', 'timestamp="17472800a0"'), "decimal Unix seconds"),
        (AUTH.header_value().replace(f'timestamp="{TS}"', 'timestamp="١٧٤٧"'), "decimal Unix seconds"),
        (AUTH.header_value().replace('mchid="1900000001"', 'mchid="19,00"x'), "malformed parameter"),
        (AUTH.header_value() + ",", "malformed parameter '': expected"),
        (AUTH.header_value().replace("RSA2048 ", "RSA2048 ,"), "malformed parameter '': expected"),
        # a trailing comma after a bad parameter: the bad one is named, not the empty piece after it
        (AUTH.header_value() + ',extra="1",', "unknown parameter 'extra'"),
        # found by these tests: a 5000-digit timestamp made int() raise (a 500)
        (
            AUTH.header_value().replace(f'timestamp="{TS}"', 'timestamp="' + "9" * 5000 + '"'),
            "decimal Unix seconds",
        ),
        (
            AUTH.header_value().replace(f'timestamp="{TS}"', 'timestamp="' + "1" * 20 + '"'),
            "decimal Unix seconds",
        ),
        # found by these tests: a nonce longer than the replay table's column was a 500 on PostgreSQL
        (
            AUTH.header_value().replace(NONCE, "N" * 65),
            "nonce_str must be 1-64 printable ASCII characters (got 65)",
        ),
        (AUTH.header_value().replace(NONCE, "nonce\x01"), "printable ASCII"),
        (AUTH.header_value().replace(NONCE, "随机串"), "printable ASCII"),
    ],
)
def test_authorization_refusals(value: str, fragment: str) -> None:
    with pytest.raises(AuthorizationFormatError) as exc:
        parse_authorization(value)
    assert fragment in str(exc.value)


def test_authorization_limits_accept_the_edges() -> None:
    edge = (
        AUTH.header_value()
        .replace(NONCE, "N" * 64)
        .replace(f'timestamp="{TS}"', 'timestamp="' + "9" * 19 + '"')
    )
    parsed = parse_authorization(edge)
    assert parsed.nonce_str == "N" * 64 and parsed.timestamp == "9" * 19
    assert parse_authorization(AUTH.header_value().replace(NONCE, "a b~!")).nonce_str == "a b~!"


def test_authorization_missing_lists_every_absent_key() -> None:
    with pytest.raises(
        AuthorizationFormatError, match=r"missing parameter\(s\): nonce_str, timestamp, serial_no, signature"
    ):
        parse_authorization('WECHATPAY2-SHA256-RSA2048 mchid="1"')


# --- §8 RSA-OAEP and §9.3 AES-256-GCM ----------------------------------------------------------


def test_11_5_gcm_vector_decrypts_exactly() -> None:
    raw = base64.b64decode(GCM_CIPHERTEXT)
    assert len(raw) == 199 and len(GCM_PLAINTEXT.encode()) == 183
    assert aes_gcm_decrypt(GCM_KEY, GCM_NONCE, GCM_AAD, GCM_CIPHERTEXT) == GCM_PLAINTEXT
    # encryption is deterministic for a fixed nonce: the vector reproduces byte for byte
    assert aes_gcm_encrypt(GCM_KEY, GCM_NONCE, GCM_AAD, GCM_PLAINTEXT) == GCM_CIPHERTEXT
    assert aes_gcm_decrypt(GCM_KEY.encode(), GCM_NONCE, GCM_AAD, GCM_CIPHERTEXT) == GCM_PLAINTEXT


def _flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("key", "nonce", "aad", "ciphertext"),
    [
        (GCM_KEY, GCM_NONCE, "webizpaY", GCM_CIPHERTEXT),  # AAD changed
        (GCM_KEY, GCM_NONCE, "", GCM_CIPHERTEXT),  # AAD dropped
        (GCM_KEY, "3uO7Ph5XgW1Q", GCM_AAD, GCM_CIPHERTEXT),  # nonce changed
        (GCM_KEY, GCM_NONCE, GCM_AAD, _flip(GCM_CIPHERTEXT, 0)),  # ciphertext changed
        (GCM_KEY, GCM_NONCE, GCM_AAD, _flip(GCM_CIPHERTEXT, 198)),  # tag changed
        ("0123456789abcdef0123456789abcdeF", GCM_NONCE, GCM_AAD, GCM_CIPHERTEXT),  # key changed
        (GCM_KEY, GCM_NONCE, GCM_AAD, "not*base64"),
        (GCM_KEY, GCM_NONCE, GCM_AAD, GCM_CIPHERTEXT[:-8]),  # truncated
        # Base64 is read strictly: a character outside the alphabet is refused, not skipped
        (GCM_KEY, GCM_NONCE, GCM_AAD, GCM_CIPHERTEXT[:8] + "\n" + GCM_CIPHERTEXT[8:]),
    ],
)
def test_gcm_tamper_fails(key: str, nonce: str, aad: str, ciphertext: str) -> None:
    with pytest.raises(DecryptionError):
        aes_gcm_decrypt(key, nonce, aad, ciphertext)


def test_gcm_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        aes_gcm_encrypt("short", GCM_NONCE, "", "x")


def test_gcm_round_trip_and_missing_aad_is_empty() -> None:
    nonce = new_gcm_nonce()
    assert len(nonce) == 12 and nonce.isalnum()
    ct = aes_gcm_encrypt(GCM_KEY, nonce, "", "中文 ✓")
    assert aes_gcm_decrypt(GCM_KEY, nonce, None, ct) == "中文 ✓"


def test_notification_resource_round_trip_and_signature(world: World) -> None:
    resource = encrypt_resource(GCM_KEY, {"a": "甲", "n": 1}, original_type="webizpay")
    assert resource["algorithm"] == "AEAD_AES_256_GCM" and resource["associated_data"] == "webizpay"
    assert decrypt_resource(GCM_KEY, resource) == {"a": "甲", "n": 1}
    with pytest.raises(ValueError, match="unsupported"):
        decrypt_resource(GCM_KEY, {**resource, "algorithm": "AES_128"})
    # untrusted JSON: a number as associated_data is a ValueError (the SDK's VerificationError), not a crash
    with pytest.raises(ValueError, match="associated_data is not a string"):
        decrypt_resource(GCM_KEY, {**resource, "associated_data": 5})
    array = {**resource, "ciphertext": aes_gcm_encrypt(GCM_KEY, resource["nonce"], "webizpay", "[1]")}
    with pytest.raises(ValueError, match="decrypted resource is not a JSON object"):
        decrypt_resource(GCM_KEY, array)
    key = k.load_private_key(world.platform_pub.private_key_pem)
    signed = sign_notification(
        b'{"id":"EV-1"}', private_key=key, key_id="PUB_KEY_ID_X", timestamp=1747280001, request_id="R"
    )
    h = signed.headers
    assert (
        h["Wechatpay-Serial"] == "PUB_KEY_ID_X"
        and h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    )
    msg = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], signed.body)
    assert verify(key.public_key(), msg, h["Wechatpay-Signature"])
    probe = sign_notification(b"{}", private_key=key, key_id="K", timestamp=1, request_id="R", probe=True)
    assert probe.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert not verify(
        key.public_key(),
        response_message("1", probe.headers["Wechatpay-Nonce"], b"{}"),
        probe.headers["Wechatpay-Signature"],
    )


def test_11_6_oaep_round_trip_is_randomised(world: World) -> None:
    private = k.load_private_key(world.platform_pub.private_key_pem)
    public = private.public_key()
    a, b = oaep_encrypt(public, "张三"), oaep_encrypt(public, "张三")
    assert a != b and len(a) == 344
    assert oaep_decrypt(private, a) == "张三" == oaep_decrypt(private, b)
    # the 214-byte limit of SHA-1 OAEP with a 2048-bit key
    assert oaep_decrypt(private, oaep_encrypt(public, "x" * 214)) == "x" * 214
    with pytest.raises(ValueError):
        oaep_encrypt(public, "x" * 215)


def test_oaep_tamper_and_wrong_key_fail(world: World) -> None:
    private = k.load_private_key(world.platform_pub.private_key_pem)
    ct = oaep_encrypt(private.public_key(), "张三")
    for bad in (_flip(ct, 5), "!!notbase64", ct[:100], ct[:8] + "\n" + ct[8:]):  # Base64 read strictly
        with pytest.raises(DecryptionError):
            oaep_decrypt(private, bad)
    assert world.other_key is not None
    with pytest.raises(DecryptionError):
        oaep_decrypt(world.other_key, ct)


def test_oaep_uses_sha1_mgf1_sha1_interoperably(world: World) -> None:
    """Decrypt what an independent OAEP-SHA1 encryptor produced (what Java/Go SDKs send)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    private = k.load_private_key(world.platform_pub.private_key_pem)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    ct = base64.b64encode(private.public_key().encrypt(b"e5bca0", oaep)).decode()
    assert oaep_decrypt(private, ct) == "e5bca0"


# --- keys and certificates ---------------------------------------------------------------------


def test_load_pkcs8_and_pkcs1_private_keys(world: World, tmp_path: Path) -> None:
    key = world.merchants[next(iter(world.merchants))].private_key
    pkcs8 = k.private_key_pem(key)
    pkcs1 = k.private_key_pem(key, pkcs1=True)
    assert pkcs8.startswith("-----BEGIN PRIVATE KEY-----")
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    path = tmp_path / "apiclient_key.pem"
    path.write_text(pkcs1)
    for source in (pkcs8, pkcs1, pkcs8.encode(), path, str(path)):
        loaded = k.load_private_key(source)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "bad",
    [
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"not a pem at all",
    ],
)
def test_load_private_key_refuses_garbage(bad: str | bytes) -> None:
    with pytest.raises(k.KeyLoadError, match="PEM RSA private key"):
        k.load_private_key(bad)


def _unarmored(pem: str) -> list[str]:
    """A PEM key as people paste it when the armor lines got lost: the body, one line or several."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return ["".join(body), "\n".join(body), body[0] + body[1]]


def test_a_key_without_its_armor_is_never_echoed(world: World) -> None:
    """Text without a '-----BEGIN' line is read as a path: a key that lost its armor was opened as a
    file and the FileNotFoundError (or 'File name too long') named the whole key."""
    pem = next(iter(world.merchants.values())).private_key_pem
    for text in _unarmored(pem):
        with pytest.raises(k.KeyLoadError) as exc:
            k.load_private_key(text)
        assert "key material" in str(exc.value)
        assert text[20:60] not in str(exc.value) and text[20:60] not in repr(exc.value.__cause__)
    with pytest.raises(FileNotFoundError, match=r"missing/key\.pem"):  # a real path keeps its own error
        k.load_private_key("missing/key.pem")


def test_only_a_stored_key_skips_the_consistency_check() -> None:
    """The server's keyring loads its platform keys with ``validated=True`` (40 ms less per key and
    worker); every other load checks the key, which is what makes skipping it safe there."""
    pem = inconsistent_private_key_pem()
    with pytest.raises(k.KeyLoadError, match="PEM RSA private key"):
        k.load_private_key(pem)
    assert isinstance(k.load_private_key(pem, validated=True), rsa.RSAPrivateKey)


def _self_signed(key: Any, *, serial: int) -> x509.Certificate:
    """A day-long self-signed certificate of ``key`` (RSA or not) with the given serial number."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_keys_and_certificates_that_are_not_rsa_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(k.KeyLoadError, match="only RSA"):
        k.load_private_key(pem)
    cert = _self_signed(ec.generate_private_key(ec.SECP256R1()), serial=1)
    with pytest.raises(k.KeyLoadError, match="only RSA certificates"):
        k.load_public_key(cert.public_bytes(serialization.Encoding.PEM))


def test_public_key_from_pem_and_certificate(world: World) -> None:
    m = world.merchants[next(iter(world.merchants))]
    from_cert = k.load_public_key(m.certificate_pem)
    from_pem = k.load_public_key(k.public_key_pem(m.private_key.public_key()))
    assert (
        from_cert.public_numbers() == from_pem.public_numbers() == m.private_key.public_key().public_numbers()
    )
    with pytest.raises(k.KeyLoadError):
        k.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(k.KeyLoadError, match=r"X\.509"):
        k.load_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_certificate_serial_is_upper_hex_40_digits(world: World) -> None:
    m = world.merchants[next(iter(world.merchants))]
    cert = k.load_certificate(m.certificate_pem)
    serial = k.certificate_serial(cert)
    assert serial == m.serial_no == format(cert.serial_number, "X")
    assert len(serial) == 40 and serial == serial.upper()
    assert int(serial, 16) == cert.serial_number
    for _ in range(50):
        assert len(format(k.new_serial_number(), "X")) == 40


def test_issued_certificates_last_their_days_and_name_their_issuer(world: World) -> None:
    """What the sandbox hands out as merchant and platform certificates: valid from ``not_before`` (by
    default 5 minutes ago, so a clock slightly behind still accepts it) for ``valid_days``, signed by the
    issuer (itself when none), and no two with the same serial."""
    key, issuer = world.other_key, world.merchants[next(iter(world.merchants))].private_key
    assert key is not None and key.key_size == 2048  # generate_private_key: RSA-2048, as the scheme says
    start = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
    own = k.issue_certificate(key, "own", valid_days=10, not_before=start)
    assert (own.not_valid_before_utc, own.not_valid_after_utc) == (start, start + dt.timedelta(days=10))
    assert own.issuer == own.subject
    own.verify_directly_issued_by(own)
    before = dt.datetime.now(dt.UTC)
    issued = k.issue_certificate(key, "child", issuer_key=issuer, issuer_name="sandbox CA")
    after = dt.datetime.now(dt.UTC)
    start = issued.not_valid_before_utc
    minutes = dt.timedelta(minutes=5)
    assert before - minutes - dt.timedelta(seconds=1) <= start <= after - minutes
    assert issued.not_valid_after_utc - start == dt.timedelta(days=5 * 365)
    assert issued.issuer.rfc4514_string() == "CN=sandbox CA" and issued.subject != issued.issuer
    assert_issued_by(issued, issuer)
    assert k.certificate_serial(own) != k.certificate_serial(issued)


def assert_issued_by(cert: x509.Certificate, issuer: rsa.RSAPrivateKey) -> None:
    assert cert.signature_hash_algorithm is not None
    issuer.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
    )


def test_certificate_serial_small_value_has_no_padding() -> None:
    cert = _self_signed(k.generate_private_key(), serial=0x0ABCDEF)
    assert k.certificate_serial(cert) == "ABCDEF"


# --- nonces, errors, RFC 3339 ------------------------------------------------------------------


def test_nonces() -> None:
    n = new_nonce()
    assert len(n) == 32 and n.isascii() and n.isalnum()
    h = new_hex_nonce()
    assert len(h) == 32 and h == h.lower() and int(h, 16) >= 0
    assert new_nonce() != new_nonce()


# protocol.md §6's catalogue, row by row (SERVICE_UNAVAILABLE is "502/503" there; the emulator says 503).
SPEC_CATALOGUE = {
    "PARAM_ERROR": 400,
    "INVALID_REQUEST": 400,
    "SIGN_ERROR": 401,
    "NO_AUTH": 403,
    "NOAUTH": 403,
    "RESOURCE_NOT_EXISTS": 404,
    "NOT_FOUND": 404,
    "ORDER_NOT_EXIST": 404,
    "MCH_NOT_EXISTS": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_ENTITY_TOO_LARGE": 413,
    "FREQUENCY_LIMITED": 429,
    "RATELIMIT_EXCEEDED": 429,
    "SYSTEM_ERROR": 500,
    "SYSTEMERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}


def test_error_catalogue_and_body() -> None:
    assert {code: status_for(code) for code in CATALOGUE} == SPEC_CATALOGUE
    assert {code: ApiError(code).status for code in SPEC_CATALOGUE} == SPEC_CATALOGUE
    assert status_for("SOME_BUSINESS_CODE") == 400  # a code outside the catalogue is a 400
    err = ApiError("SIGN_ERROR", "错误的签名，验签失败", detail={"field": "signature"})
    assert err.status == 401
    assert (
        err.body_bytes()
        == '{"code":"SIGN_ERROR","message":"错误的签名，验签失败","detail":{"field":"signature"}}'.encode()
    )
    assert ApiError("NO_AUTH").body() == {"code": "NO_AUTH", "message": "无权限"}
    pe = param_error("/sp_mchid", "too long", value="x")
    assert pe.message == "参数错误：/sp_mchid too long"
    assert pe.status == 400 and pe.body()["detail"] == {
        "field": "/sp_mchid",
        "location": "body",
        "issue": "too long",
        "value": "x",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-05-15T11:33:20+08:00", dt.datetime(2025, 5, 15, 3, 33, 20, tzinfo=dt.UTC)),
        ("2025-05-15T03:33:20Z", dt.datetime(2025, 5, 15, 3, 33, 20, tzinfo=dt.UTC)),
        ("2025-05-15T11:33:20.123+08:00", dt.datetime(2025, 5, 15, 3, 33, 20, 123000, tzinfo=dt.UTC)),
        ("2025-05-15T11:33:20.123456789+08:00", dt.datetime(2025, 5, 15, 3, 33, 20, 123456, tzinfo=dt.UTC)),
        ("2025-05-14T22:33:20-05:00", dt.datetime(2025, 5, 15, 3, 33, 20, tzinfo=dt.UTC)),
        # RFC 3339 §5.6: "T" and "Z" may alternatively be lower case
        ("2025-05-15t03:33:20z", dt.datetime(2025, 5, 15, 3, 33, 20, tzinfo=dt.UTC)),
        ("2025-05-15t11:33:20.5+08:00", dt.datetime(2025, 5, 15, 3, 33, 20, 500000, tzinfo=dt.UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: dt.datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2025-05-15 11:33:20+08:00",
        "2025-05-15T11:33:20",  # no offset
        "2025-05-15T11:33:20+0800",
        "2025-05-15",
        "2025-13-15T11:33:20+08:00",
        "2025-05-15T11:33:20+24:00",
        "2025-05-15T11:33:20+08:00 ",
        "",
    ],
)
def test_parse_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("2023-12-31T23:59:59+08:00", "2023-12-31T23:59:59+08:00"),
        ("2023-12-31T15:59:59Z", "2023-12-31T23:59:59+08:00"),
        ("2023-12-31t15:59:59z", "2023-12-31T23:59:59+08:00"),
        ("2023-12-31T10:59:59-05:00", "2023-12-31T23:59:59+08:00"),
        ("2023-12-31T15:59:59.120000001+00:00", "2023-12-31T23:59:59.120000001+08:00"),
        ("9999-12-31T15:59:59Z", "9999-12-31T23:59:59+08:00"),
        ("9999-12-31t23:59:59z", "9999-12-31T23:59:59Z"),  # no four-digit year in +08:00
    ],
)
def test_china_time_text(sent: str, answered: str) -> None:
    assert china_time_text(sent) == answered
    assert parse_rfc3339(answered) == parse_rfc3339(sent)


def test_format_rfc3339_china_time() -> None:
    t = dt.datetime(2025, 5, 15, 3, 33, 20, 123456, tzinfo=dt.UTC)
    assert format_rfc3339(t) == "2025-05-15T11:33:20+08:00"
    assert format_rfc3339(t, millis=True) == "2025-05-15T11:33:20.123+08:00"
    assert parse_rfc3339(format_rfc3339(t)) == t.replace(microsecond=0)


def test_sdk_models_take_either_case_of_t_and_z() -> None:
    """The SDK parses /v3/certificates with these models: whatever RFC 3339 spelling the server sends
    (RFC 3339 §5.6 allows a lower-case t and z) must not fail the download."""
    from wxpartner.models.certificates import PlatformCertificate

    enc = {"algorithm": "AEAD_AES_256_GCM", "nonce": "n", "associated_data": "certificate", "ciphertext": "c"}
    cert = PlatformCertificate.model_validate(
        {
            "serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            "effective_time": "2018-06-08t10:34:56+08:00",
            "expire_time": "2023-06-08t02:34:56z",
            "encrypt_certificate": enc,
        }
    )
    assert cert.expire_time == "2023-06-08t02:34:56z"  # kept as received
