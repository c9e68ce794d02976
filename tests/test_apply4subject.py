"""apply4subject A1–A4 through real HTTP: submit with RSA-OAEP fields, query, cancel (every path form),
merchant state, bad input, callers and isolation."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from apply4subject_support import (
    BASE,
    CHANNEL_B,
    IDNO,
    MOBILE,
    NAME,
    SUB_X,
    act_ok,
    enc,
    make_body,
    mutate,
    query,
    set_roles,
    state_of,
    submit,
    submit_ok,
)
from support import SP_A, SP_B, SP_C, ApiClient, World, statements_in_writes, statements_run
from wxpartner.domain.apply4subject import fingerprints
from wxpartner.domain.merchants import KeyMode, Merchant, RelationKind, Role
from wxpartner.protocol.crypto import oaep_encrypt
from wxpartner.sandbox.material import make_platform_certificate
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import registry
from wxpartner.store.apply4subject_tables import apply4subject_applyments


@pytest.fixture
def chan(app: WxPartnerApp, world: World, client_a: ApiClient) -> ApiClient:
    set_roles(app, world)
    return client_a


@pytest.fixture
def inst(chan: ApiClient, client_b: ApiClient) -> ApiClient:
    return client_b


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    return body


# --- A1 submit / A2 query --------------------------------------------------------------------------


def test_submit_then_query_by_either_key(chan: ApiClient) -> None:
    resp = submit(chan, make_body(chan, "1230000001_1"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Wechatpay-Signature"]
    applyment_id = resp.json()["applyment_id"]
    assert isinstance(applyment_id, int) and applyment_id == 20_000_000_000_001  # the first: above 2^31
    assert list(resp.json()) == ["applyment_id"]
    for params in (
        {"applyment_id": applyment_id},
        {"business_code": "1230000001_1"},
        {"applyment_id": applyment_id, "business_code": "1230000001_1"},
    ):
        got = query(chan, **params)
        assert got.status_code == 200, got.text
        assert got.json() == {"applyment_state": "APPLYMENT_STATE_WAITTING_FOR_AUDIT"}


def test_submit_path_with_trailing_slash(chan: ApiClient) -> None:
    resp = submit(chan, make_body(chan, "slash_1"), path=BASE + "/")
    assert resp.status_code == 200, resp.text
    assert query(chan, business_code="slash_1").status_code == 200


def test_applyment_ids_numeric_unique_increasing(chan: ApiClient) -> None:
    ids = [submit_ok(chan, f"uniq_{i}") for i in range(3)]
    assert len(set(ids)) == 3 and ids == sorted(ids)


def test_identical_resubmit_returns_same_id_despite_new_ciphertexts(chan: ApiClient) -> None:
    first = submit_ok(chan, "idem_1")
    again = make_body(chan, "idem_1")  # re-encrypted: different bytes, same plaintexts
    resp = submit(chan, again)
    assert resp.status_code == 200, resp.text
    assert resp.json()["applyment_id"] == first


def test_resubmit_with_other_data_is_refused(chan: ApiClient) -> None:
    submit_ok(chan, "idem_2")
    resp = submit(chan, make_body(chan, "idem_2", mobile="13900139000"))
    body = _error(resp, 400, "INVALID_REQUEST")
    assert body["detail"]["field"] == "/business_code"
    resp = submit(chan, make_body(chan, "idem_2", merchant_name="另一家公司"))
    _error(resp, 400, "INVALID_REQUEST")


def test_a_new_submit_is_one_statement_on_postgresql(chan: ApiClient, app: WxPartnerApp) -> None:
    """A1 with a new business_code: on PostgreSQL one statement draws the id and inserts the row (read
    back whole), run in autocommit (no BEGIN/COMMIT round trips); on SQLite the code's read, the draw
    and the insert, in a write transaction. A resubmit of a known code reads it as before (a replay
    answers the same id, nothing drawn: the next new one follows on); on PostgreSQL after the one
    statement, which found the code taken, and without running it again."""
    db = app.state.db
    first = submit_ok(chan, "stmt_0")  # warm: credentials remembered

    def ours(statements: list[str]) -> list[str]:
        return [
            sql
            for sql in statements
            if ("apply4subject" in sql or "sandbox_kv" in sql) and "request_nonces" not in sql
        ]

    with statements_run(db) as seen, statements_in_writes(db) as in_writes:
        made = submit_ok(chan, "stmt_1")
    business = ours(seen)
    postgres = db.engine.dialect.name == "postgresql"
    assert len(business) == (1 if postgres else 3), business
    assert ours(in_writes) == ([] if postgres else business), in_writes
    assert made == first + 1
    body = make_body(chan, "stmt_1")
    with statements_run(db) as seen, statements_in_writes(db) as in_writes:
        replayed = submit(chan, body)
    assert replayed.json()["applyment_id"] == made  # a replay: same payload, same id
    read = [sql for sql in ours(seen) if sql.startswith("SELECT")]
    assert len(read) == 1 and ours(in_writes) == read, (seen, in_writes)
    assert ours(seen) == (business + read if postgres else read), seen
    assert submit_ok(chan, "stmt_2") == made + 1
    assert (
        query(chan, business_code="stmt_1").json()["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    )


def test_query_refusals(chan: ApiClient) -> None:
    a = submit_ok(chan, "q_1")
    submit_ok(chan, "q_2")
    body = _error(query(chan), 400, "PARAM_ERROR")
    assert body["detail"]["location"] == "query"
    _error(query(chan, applyment_id=a, business_code="q_2"), 400, "PARAM_ERROR")
    _error(query(chan, applyment_id=99999999999999), 404, "RESOURCE_NOT_EXISTS")
    _error(query(chan, applyment_id=str(2**63)), 404, "RESOURCE_NOT_EXISTS")  # > BIGINT, a uint64
    _error(query(chan, applyment_id="99999999999999999999"), 400, "PARAM_ERROR")  # > uint64: no integer id
    _error(query(chan, business_code="nope"), 404, "RESOURCE_NOT_EXISTS")
    body = _error(query(chan, applyment_id="12ab"), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "applyment_id"


def test_a_query_is_counted_in_one_statement(chan: ApiClient, app: WxPartnerApp, control: TestClient) -> None:
    """A2 counts each query (the auto policy's "after N queries"): by either key or both, the count,
    the applyment and the policy come from one statement; a refused query counts nothing."""
    a = submit_ok(chan, "count_1")
    submit_ok(chan, "count_2")
    assert query(chan, applyment_id=a).status_code == 200  # warm: credentials remembered
    for params in (
        {"applyment_id": a},
        {"business_code": "count_1"},
        {"applyment_id": a, "business_code": "count_1"},
    ):
        with statements_run(app.state.db) as seen:
            assert query(chan, **params).status_code == 200
        business = [sql for sql in seen if "apply4subject" in sql or sql.startswith("SELECT sandbox_kv")]
        assert len(business) == 1 and business[0].startswith("UPDATE"), (params, seen)
    refused = [
        query(chan, applyment_id=a, business_code="count_2").status_code,  # two applyments
        query(chan, applyment_id=a, business_code="nope").status_code,
        query(chan, business_code="nope").status_code,
    ]
    assert refused == [400, 404, 404]
    counted = control.get(f"/sandbox/apply4subject/applyments/{a}").json()["query_count"]
    assert counted == 4


# --- encryption ---------------------------------------------------------------------------------------


def test_missing_wechatpay_serial(chan: ApiClient) -> None:
    body = _error(submit(chan, make_body(chan, "enc_1"), serial=None), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "Wechatpay-Serial"
    assert body["detail"]["location"] == "header"
    _error(query(chan, business_code="enc_1"), 404, "RESOURCE_NOT_EXISTS")


def test_unknown_or_foreign_wechatpay_serial(chan: ApiClient, world: World) -> None:
    body = _error(
        submit(chan, make_body(chan, "enc_2"), serial="PUB_KEY_ID_0000000000000000000000"), 400, "PARAM_ERROR"
    )
    assert body["detail"]["location"] == "header"
    # SP_A is in public-key mode: a platform-certificate serial is not a key it may name.
    _error(submit(chan, make_body(chan, "enc_2"), serial=world.platform_cert.key_id), 400, "PARAM_ERROR")


def test_a_wechatpay_serial_refusal_says_why(
    app: WxPartnerApp, chan: ApiClient, inst: ApiClient, world: World
) -> None:
    cert = world.platform_cert.key_id
    # the certificate-mode institution names its certificate in lower case
    body = _error(submit(inst, make_body(inst, "why_1"), serial=cert.lower()), 400, "PARAM_ERROR")
    assert f"it is the registered serial {cert} written in lower case" in body["detail"]["issue"]
    # the public-key-mode channel names a certificate
    body = _error(submit(chan, make_body(chan, "why_2"), serial=cert), 400, "PARAM_ERROR")
    assert "this merchant is in public-key mode" in body["detail"]["issue"]
    # a platform certificate past its validity (Emulator choice: only valid ones can be named)
    expired = make_platform_certificate(valid_days=1, not_before=time.time() - 3 * 86400)
    with app.state.db.write() as conn:
        registry.add_platform_key(conn, expired)
    body = _error(submit(inst, make_body(inst, "why_3"), serial=expired.key_id), 400, "PARAM_ERROR")
    assert f"platform certificate {expired.key_id} expired at" in body["detail"]["issue"]
    _error(query(inst, business_code="why_3"), 404, "RESOURCE_NOT_EXISTS")  # nothing written


def test_certificate_mode_caller_encrypts_under_certificate(inst: ApiClient, world: World) -> None:
    assert submit(inst, make_body(inst, "cert_1")).status_code == 200
    # Encrypted under the public key but naming the certificate: does not decrypt.
    wrong = make_body(inst, "cert_2")
    pub = world.platform_public_key(world.platform_pub.key_id)
    wrong["contact_info"]["name"] = oaep_encrypt(pub, NAME)
    body = _error(submit(inst, wrong), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "/contact_info/name"


UNDECRYPTABLE = [
    "/contact_info/name",
    "/contact_info/mobile",
    "/contact_info/id_card_number",
    "/identification_info/identification_name",
    "/identification_info/identification_number",
]


def test_undecryptable_field_is_named(chan: ApiClient, world: World) -> None:
    assert world.other_key is not None
    stranger = oaep_encrypt(world.other_key.public_key(), "whatever")
    for pointer in UNDECRYPTABLE:  # one app for all cases: the suite stays fast on both backends
        body = _error(submit(chan, mutate(make_body(chan, "dec_1"), pointer, stranger)), 400, "PARAM_ERROR")
        assert body["detail"]["field"] == pointer
        assert "value" not in body["detail"]
    _error(query(chan, business_code="dec_1"), 404, "RESOURCE_NOT_EXISTS")  # nothing written


def test_plaintext_is_not_a_ciphertext(chan: ApiClient) -> None:
    body = _error(
        submit(chan, mutate(make_body(chan, "dec_2"), "/contact_info/mobile", MOBILE)), 400, "PARAM_ERROR"
    )
    assert body["detail"]["field"] == "/contact_info/mobile"


def test_plaintext_never_logged(chan: ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    submit_ok(chan, "log_1")
    submit(chan, make_body(chan, "log_1", mobile="13700137000"))  # refused resubmit
    submit(chan, mutate(make_body(chan, "log_2"), "/contact_info/mobile", enc(chan, " 138")))
    for secret in (NAME, MOBILE, IDNO, "13700137000"):
        assert secret not in caplog.text


def test_stored_materials_are_masked(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "mask_1")
    view = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    text = str(view)
    assert MOBILE not in text and IDNO not in text  # (the licence's legal_person is not an ENC field)
    assert view["materials"]["contact_info"]["name"] == "张*"
    assert view["materials"]["contact_info"]["mobile"] == "13*******00"
    assert (
        view["materials"]["subject_info"]["business_license_info"]["merchant_name"] == "深圳测试科技有限公司"
    )
    # one character kept at each end below 8 characters, two from 8 on
    body = make_body(chan, "mask_2", name="爱新觉罗·溥仪", mobile="12345678")
    body["identification_info"]["identification_address"] = enc(chan, "北京市")
    applyment_id = submit(chan, body).json()["applyment_id"]
    materials = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()["materials"]
    assert (materials["contact_info"]["name"], materials["contact_info"]["mobile"]) == (
        "爱*****仪",
        "12****78",
    )
    ident = materials["identification_info"]
    assert (ident["identification_address"], ident["identification_number"]) == (
        "北*市",
        "11**************11",
    )


# --- bad input --------------------------------------------------------------------------------------------

BAD: list[tuple[str, Any, str]] = [
    ("/business_code", ..., "/business_code"),
    ("/business_code", "has-dash", "/business_code"),
    ("/business_code", "x" * 129, "/business_code"),
    ("/contact_info", ..., "/contact_info"),
    ("/contact_info/contact_type", ..., "/contact_info/contact_type"),
    ("/contact_info/contact_type", "BOSS", "/contact_info/contact_type"),
    ("/contact_info/mobile", ..., "/contact_info/mobile"),
    ("/contact_info/mobile", "A" * 1025, "/contact_info/mobile"),
    ("/contact_info/contact_period_begin", "2024/01/01", "/contact_info/contact_period_begin"),
    ("/contact_info/contact_period_end", "someday", "/contact_info/contact_period_end"),
    ("/subject_info", ..., "/subject_info"),
    ("/subject_info/subject_type", "SUBJECT_TYPE_PERSON", "/subject_info/subject_type"),
    ("/subject_info/business_license_info", ..., "/subject_info/business_license_info"),
    (
        "/subject_info/business_license_info/merchant_name",
        ...,
        "/subject_info/business_license_info/merchant_name",
    ),
    (
        "/subject_info/business_license_info/licence_valid_date",
        '["2019-13-01","forever"]',
        "/subject_info/business_license_info/licence_valid_date",
    ),
    (
        "/subject_info/business_license_info/licence_valid_date",
        "2019-01-01,forever",
        "/subject_info/business_license_info/licence_valid_date",
    ),
    (
        "/subject_info/business_license_info/company_address",
        "地" * 257,
        "/subject_info/business_license_info/company_address",
    ),
    (
        "/subject_info/special_operation_info",
        [{"category_id": 99}],
        "/subject_info/special_operation_info/0/category_id",
    ),
    ("/identification_info", ..., "/identification_info"),
    ("/identification_info/identification_type", ..., "/identification_info/identification_type"),
    (
        "/identification_info/identification_valid_date",
        '["2039-01-01","2019-01-01"]',
        "/identification_info/identification_valid_date",
    ),
    ("/addition_info/confirm_mchid_list", ["12ab"], "/addition_info/confirm_mchid_list/0"),
    (
        "/ubo_info_list",
        [{"ubo_id_doc_type": "IDENTIFICATION_TYPE_IDCARD"}],
        "/ubo_info_list/0/ubo_id_doc_copy",
    ),
]


def test_bad_input_names_the_field(chan: ApiClient) -> None:
    good = make_body(chan, "bad_1")
    for pointer, value, field in BAD:
        resp = submit(chan, mutate(good, pointer, value))
        body = _error(resp, 400, "PARAM_ERROR")
        assert body["detail"]["field"] == field, (pointer, body)
        assert body["detail"]["location"] == "body"
    _error(query(chan, business_code="bad_1"), 404, "RESOURCE_NOT_EXISTS")  # no partial write


def test_decrypted_value_rules(chan: ApiClient) -> None:
    base = make_body(chan, "rule_1")
    cases = [
        ("/contact_info/mobile", enc(chan, "138 0013 8000"), "/contact_info/mobile"),
        ("/contact_info/mobile", enc(chan, MOBILE + "\n"), "/contact_info/mobile"),
        (
            "/identification_info/identification_number",
            enc(chan, "12345"),
            "/identification_info/identification_number",
        ),
        (
            "/contact_info/name",
            enc(chan, "李四"),
            "/contact_info/name",
        ),  # LEGAL contact must be the legal person
        ("/contact_info/name", "", "/contact_info/name"),
        # every required ENC field, the optional ones when given, and a value that decrypts to nothing
        ("/contact_info/mobile", "", "/contact_info/mobile"),
        ("/identification_info/identification_name", "", "/identification_info/identification_name"),
        ("/identification_info/identification_number", "", "/identification_info/identification_number"),
        ("/contact_info/id_card_number", "not-base64!", "/contact_info/id_card_number"),
        (
            "/identification_info/identification_address",
            "not-base64!",
            "/identification_info/identification_address",
        ),
        (
            "/identification_info/identification_address",
            enc(chan, ""),
            "/identification_info/identification_address",
        ),
        # a LEGAL contact's ID number is the legal person's
        ("/contact_info/id_card_number", enc(chan, "110101199003070022"), "/contact_info/id_card_number"),
    ]
    for pointer, value, field in cases:
        body = _error(submit(chan, mutate(base, pointer, value)), 400, "PARAM_ERROR")
        assert body["detail"]["field"] == field, (pointer, body)
    # the optional ones may be left out; a plaintext may use all of RSA-OAEP's 214 bytes
    lean = mutate(mutate(base, "/contact_info/id_card_number", ...), "/business_code", "rule_2")
    assert submit(chan, lean).status_code == 200
    empty = mutate(mutate(base, "/contact_info/id_card_number", ""), "/business_code", "rule_4")  # as absent
    assert submit(chan, empty).status_code == 200
    # only a mainland ID card number has the 15/18-digit form
    passport = mutate(
        lean, "/identification_info/identification_type", "IDENTIFICATION_TYPE_OVERSEA_PASSPORT"
    )
    passport = mutate(passport, "/identification_info/identification_number", enc(chan, "E12345678"))
    assert submit(chan, mutate(passport, "/business_code", "rule_5")).status_code == 200
    address = "北" * 71 + "1"
    assert len(address.encode()) == 214
    full = mutate(
        mutate(base, "/identification_info/identification_address", enc(chan, address)),
        "/business_code",
        "rule_3",
    )
    assert submit(chan, full).status_code == 200
    agent = mutate(base, "/contact_info/contact_type", "SUPER")
    body = _error(submit(chan, agent), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "/contact_info/contact_id_doc_type"
    agent = mutate(agent, "/contact_info/contact_id_doc_type", "IDENTIFICATION_TYPE_IDCARD")
    agent = mutate(agent, "/contact_info/name", enc(chan, "李四"))
    assert submit(chan, agent).status_code == 200


def test_other_subject_types_need_their_certificate(chan: ApiClient) -> None:
    gov = mutate(make_body(chan, "gov_1"), "/subject_info/subject_type", "SUBJECT_TYPE_GOVERNMENT")
    body = _error(submit(chan, gov), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "/subject_info/certificate_info"
    gov["subject_info"]["certificate_info"] = {
        "cert_type": "CERTIFICATE_TYPE_2388",
        "cert_number": "12100000400000000X",
        "cert_copy": "media-cert",
        "merchant_name": "某某局",
        "legal_person": NAME,
        "company_address": "北京市",
        "cert_valid_date": '["2010-01-01","长期"]',
    }
    assert submit(chan, gov).status_code == 200
    micro = mutate(make_body(chan, "micro_1"), "/subject_info/subject_type", "SUBJECT_TYPE_MICRO")
    body = _error(submit(chan, micro), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "/subject_info/assist_prove_info"
    # an institution needs either: the licence, or the certificate alone
    inst = mutate(gov, "/subject_info/subject_type", "SUBJECT_TYPE_INSTITUTIONS")
    inst = mutate(inst, "/subject_info/business_license_info", ...)
    bare = mutate(inst, "/subject_info/certificate_info", ...)
    body = _error(submit(chan, mutate(bare, "/business_code", "inst_1")), 400, "PARAM_ERROR")
    assert body["detail"]["field"] == "/subject_info/business_license_info"
    assert "(or certificate_info)" in body["detail"]["issue"]
    assert submit(chan, mutate(inst, "/business_code", "inst_1")).status_code == 200


def test_ubo_fields_are_decrypted(chan: ApiClient) -> None:
    body = make_body(chan, "ubo_1")
    body["ubo_info_list"] = [
        {
            "ubo_id_doc_type": "IDENTIFICATION_TYPE_IDCARD",
            "ubo_id_doc_copy": "m1",
            "ubo_id_doc_copy_back": "m2",
            "ubo_id_doc_name": enc(chan, "王五"),
            "ubo_id_doc_number": enc(chan, "110101199003070022"),
            "ubo_id_doc_address": "not-base64!",
            "ubo_period_begin": "2019-01-01",
            "ubo_period_end": "forever",
        }
    ]
    err = _error(submit(chan, body), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "/ubo_info_list/0/ubo_id_doc_address"
    body["ubo_info_list"][0]["ubo_id_doc_address"] = ""  # each of the three is required
    err = _error(submit(chan, body), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "/ubo_info_list/0/ubo_id_doc_address"
    body["ubo_info_list"][0]["ubo_id_doc_address"] = enc(chan, "北京市")
    assert submit(chan, body).status_code == 200


# --- callers --------------------------------------------------------------------------------------------


def test_service_provider_may_not_call(chan: ApiClient, client_c: ApiClient, world: World) -> None:
    msg = "只能由从业机构或渠道商调用该接口，请检查调用方商户类型"
    resp = client_c.post(BASE, make_body(client_c, "sp_1"), wechatpay_serial=world.platform_pub.key_id)
    assert _error(resp, 400, "PARAM_ERROR")["message"] == msg
    assert _error(query(client_c, business_code="x"), 400, "PARAM_ERROR")["message"] == msg
    assert _error(client_c.post(f"{BASE}/x/cancel"), 400, "PARAM_ERROR")["message"] == msg
    assert _error(client_c.get(f"{BASE}/merchants/{SUB_X}/state"), 400, "PARAM_ERROR")["message"] == msg


def test_institution_channel_id_rules(app: WxPartnerApp, inst: ApiClient) -> None:
    body = make_body(inst, "inst_1")
    body.pop("channel_id")
    err = _error(submit(inst, body), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "/channel_id"
    _error(submit(inst, mutate(body, "/channel_id", "1239999999")), 403, "NO_AUTH")
    # The website/YAML put channel_id in the query string: accepted there too.
    resp = submit(inst, body, path=f"{BASE}?channel_id={CHANNEL_B}")
    assert resp.status_code == 200, resp.text
    clash = mutate(make_body(inst, "inst_2"), "/channel_id", CHANNEL_B)
    err = _error(submit(inst, clash, path=f"{BASE}?channel_id=1230000399"), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "/channel_id"
    # the channel is part of the submission: either spelling replays it, another channel is other data
    assert submit(inst, mutate(body, "/channel_id", CHANNEL_B)).json() == resp.json()
    with app.state.db.write() as conn:
        registry.upsert_merchant(
            conn, Merchant("1230000398", "", Role.CHANNEL, None, KeyMode.PUBLIC_KEY, None)
        )
        registry.add_relation(conn, SP_B, "1230000398", RelationKind.CHANNEL)
    other = _error(submit(inst, mutate(body, "/channel_id", "1230000398")), 400, "INVALID_REQUEST")
    assert other["detail"]["field"] == "/business_code"


def test_channel_caller_may_not_name_another_channel(chan: ApiClient) -> None:
    body = mutate(make_body(chan, "ch_1"), "/channel_id", "1239999999")
    _error(submit(chan, body), 400, "PARAM_ERROR")
    assert submit(chan, mutate(body, "/channel_id", SP_A)).status_code == 200


def _id(resp: Any) -> int:
    assert resp.status_code == 200, resp.text
    return int(resp.json()["applyment_id"])


def test_a_channel_merchant_naming_itself_or_not_submits_the_same_applyment(chan: ApiClient) -> None:
    """A channel merchant's channel_id names itself whether omitted (as A1 says it calls) or given as its
    own number, so a resubmit in the other spelling replays the applyment; it was refused as other data
    (the fingerprint held null in one and the mchid in the other)."""
    omitted = _id(submit(chan, make_body(chan, "self_1")))
    assert _id(submit(chan, mutate(make_body(chan, "self_1"), "/channel_id", SP_A))) == omitted
    assert _id(submit(chan, make_body(chan, "self_1"), path=f"{BASE}?channel_id={SP_A}")) == omitted
    own = _id(submit(chan, mutate(make_body(chan, "self_2"), "/channel_id", SP_A)))
    assert own != omitted
    assert _id(submit(chan, make_body(chan, "self_2"))) == own
    # the rest of the submission still counts: other data under either spelling is refused
    for body in (
        make_body(chan, "self_2", mobile="13900139000"),
        make_body(chan, "self_1", mobile="13900139000"),
    ):
        _error(submit(chan, mutate(body, "/channel_id", SP_A)), 400, "INVALID_REQUEST")
        _error(submit(chan, body), 400, "INVALID_REQUEST")
    # another channel is not the caller: refused (an institution's other channel is other data,
    # test_institution_channel_id_rules)
    _error(submit(chan, mutate(make_body(chan, "self_1"), "/channel_id", CHANNEL_B)), 400, "PARAM_ERROR")


def test_an_applyment_stored_with_a_null_channel_digest_still_replays(
    app: WxPartnerApp, chan: ApiClient
) -> None:
    """Versions before the channel rule stored a channel merchant's omitted channel_id as null in the
    digest; an identical resubmit of such an applyment, in either spelling, still replays it."""
    applyment_id = _id(submit(chan, make_body(chan, "old_1")))
    plain = {
        "/contact_info/name": NAME,
        "/contact_info/id_card_number": IDNO,
        "/contact_info/mobile": MOBILE,
        "/identification_info/identification_name": NAME,
        "/identification_info/identification_number": IDNO,
    }
    raw = make_body(chan, "old_1")
    current, legacy = fingerprints(raw, plain, SP_A, None)
    assert fingerprints(raw, plain, SP_A, SP_A) == (current, legacy) and current != legacy
    with app.state.db.write() as conn:
        table = apply4subject_applyments
        stored = conn.execute(sa.select(table.c.fingerprint).where(table.c.applyment_id == applyment_id))
        assert stored.scalar_one() == current  # the server digests what this test does
        conn.execute(sa.update(table).where(table.c.applyment_id == applyment_id).values(fingerprint=legacy))
    assert _id(submit(chan, make_body(chan, "old_1"))) == applyment_id
    assert _id(submit(chan, mutate(make_body(chan, "old_1"), "/channel_id", SP_A))) == applyment_id
    _error(submit(chan, make_body(chan, "old_1", mobile="13900139000")), 400, "INVALID_REQUEST")


def test_isolation_between_callers(chan: ApiClient, inst: ApiClient, control: TestClient) -> None:
    a_id = submit_ok(chan, "shared_code")
    b_id = submit_ok(inst, "shared_code")  # the same business_code is another caller's own
    assert a_id != b_id
    _error(query(inst, applyment_id=a_id), 404, "RESOURCE_NOT_EXISTS")
    assert state_of(inst, b_id) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    _error(inst.post(f"{BASE}/{a_id}/cancel"), 404, "RESOURCE_NOT_EXISTS")
    assert state_of(chan, a_id) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    act_ok(control, a_id, "pass", authorize=True)
    assert (
        chan.get(f"{BASE}/merchants/{SUB_X}/state").json()["authorize_state"] == "AUTHORIZE_STATE_AUTHORIZED"
    )
    assert (
        inst.get(f"{BASE}/merchants/{SUB_X}/state").json()["authorize_state"]
        == "AUTHORIZE_STATE_UNAUTHORIZED"
    )


# --- A3 cancel -----------------------------------------------------------------------------------------


def _assert_204(resp: Any) -> None:
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert resp.headers["Wechatpay-Signature"]  # verified over "<ts>\n<nonce>\n\n" by the client


def test_cancel_by_business_code(chan: ApiClient) -> None:
    submit_ok(chan, "c_1")
    _assert_204(chan.post(f"{BASE}/c_1/cancel"))
    assert query(chan, business_code="c_1").json()["applyment_state"] == "APPLYMENT_STATE_CANCELED"


def test_cancel_by_applyment_id(chan: ApiClient) -> None:
    applyment_id = submit_ok(chan, "c_2")
    _assert_204(chan.post(f"{BASE}/{applyment_id}/cancel"))
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_CANCELED"


def test_cancel_seed_curl_form(chan: ApiClient) -> None:
    """seed 003: POST .../applyment/{business_code}/cancel?applyment_id=..., Content-Type and
    Wechatpay-Serial sent, empty body signed."""
    applyment_id = submit_ok(chan, "1230000001_10000")
    resp = chan.post(
        f"{BASE}/1230000001_10000/cancel?applyment_id={applyment_id}",
        headers={"Content-Type": "application/json"},
        wechatpay_serial=chan.world.platform_pub.key_id,
    )
    _assert_204(resp)
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_CANCELED"


def test_applyment_id_with_leading_zeros_names_the_same_applyment(chan: ApiClient) -> None:
    """Seed 003 types applyment_id an integer; Go's strconv.ParseUint and Java's Long.parseLong read
    000123 as 123, however many zeros: A2's query, A3's path and A3's ?applyment_id= agree (a padded
    form longer than 20 characters was a PARAM_ERROR in A2 and a 404 in A3's path)."""
    a = submit_ok(chan, "zeros_1")
    b = submit_ok(chan, "zeros_2")
    for padded in (f"0{a}", "0" * 30 + str(a)):
        got = query(chan, applyment_id=padded)
        assert got.status_code == 200, got.text
        assert got.json()["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
        both = query(chan, applyment_id=padded, business_code="zeros_1")
        assert both.status_code == 200, both.text
    _error(query(chan, applyment_id="0" * 30 + str(b), business_code="zeros_1"), 400, "PARAM_ERROR")
    # past uint64 stays a PARAM_ERROR whatever the padding; past the 128-character limit too
    err = _error(query(chan, applyment_id="0" * 10 + str(2**64)), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "applyment_id" and "unsigned 64-bit" in err["message"], err
    _error(query(chan, applyment_id="0" * 129), 400, "PARAM_ERROR")
    _error(query(chan, applyment_id="0" * 30), 404, "RESOURCE_NOT_EXISTS")
    _assert_204(chan.post(f"{BASE}/zeros_1/cancel?applyment_id={'0' * 30}{a}"))
    _assert_204(chan.post(f"{BASE}/{'0' * 30}{b}/cancel"))
    assert state_of(chan, a) == state_of(chan, b) == "APPLYMENT_STATE_CANCELED"
    c = submit_ok(chan, "zeros_3")
    _assert_204(chan.post(f"{BASE}/0{c}/cancel"))
    assert state_of(chan, c) == "APPLYMENT_STATE_CANCELED"


def test_cancel_refusals(chan: ApiClient) -> None:
    a = submit_ok(chan, "c_3")
    b = submit_ok(chan, "c_4")
    err = _error(chan.post(f"{BASE}/c_3/cancel?applyment_id={b}"), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "applyment_id"
    _error(chan.post(f"{BASE}/nope/cancel"), 404, "RESOURCE_NOT_EXISTS")
    _error(chan.post(f"{BASE}/99999999999999/cancel"), 404, "RESOURCE_NOT_EXISTS")
    _error(chan.post(f"{BASE}/99999999999999999999/cancel"), 404, "RESOURCE_NOT_EXISTS")
    _error(chan.post(f"{BASE}/c_3/cancel?applyment_id=99999999999999999999"), 400, "PARAM_ERROR")
    _error(chan.get(f"{BASE}/c_3/cancel"), 405, "METHOD_NOT_ALLOWED")
    assert state_of(chan, a) == state_of(chan, b) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"


def test_a_cancel_is_one_statement(chan: ApiClient, app: WxPartnerApp) -> None:
    """A3 that cancels runs one statement (a conditional UPDATE naming the applyment by either path
    key and ?applyment_id=), on PostgreSQL in autocommit; a repeat of a done cancel and a refusal go on
    to the reads that word them."""
    db = app.state.db
    postgres = db.engine.dialect.name == "postgresql"
    a = submit_ok(chan, "one_1")
    b = submit_ok(chan, "one_2")
    c = submit_ok(chan, "one_3")
    d_ = submit_ok(chan, str(a))  # a business_code that is another applyment's id: the code wins
    assert query(chan, applyment_id=a).status_code == 200  # warm: credentials remembered
    for path, expect in (
        ("one_1/cancel", a),
        (f"{b}/cancel", b),
        (f"one_3/cancel?applyment_id={c}", c),
        (f"{a}/cancel", d_),
    ):
        with statements_run(db) as seen, statements_in_writes(db) as in_writes:
            _assert_204(chan.post(f"{BASE}/{path}"))
        business = [sql for sql in seen if "apply4subject" in sql]
        assert len(business) == 1 and business[0].startswith("UPDATE"), (path, seen)
        # PostgreSQL: in autocommit, no BEGIN/COMMIT round trips; SQLite: in a write transaction
        assert [sql for sql in in_writes if "apply4subject" in sql] == ([] if postgres else business)
        assert state_of(chan, expect) == "APPLYMENT_STATE_CANCELED"
    assert state_of(chan, a) == "APPLYMENT_STATE_CANCELED"  # by its own code "one_1"
    with statements_run(db) as seen:
        _assert_204(chan.post(f"{BASE}/one_1/cancel"))  # a repeat: 204, read statement by statement
    business = [sql.split()[0] for sql in seen if "apply4subject" in sql]
    assert business == ["UPDATE", "SELECT"], seen  # the one statement (no row), not run again; the read
    e = submit_ok(chan, "one_4")
    err = _error(chan.post(f"{BASE}/one_4/cancel?applyment_id={c}"), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "applyment_id"
    assert state_of(chan, e) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"


# state -> sandbox actions reaching it from WAITTING_FOR_AUDIT, and whether cancel is allowed
PATHS: dict[str, tuple[list[tuple[str, dict[str, Any]]], int]] = {
    "APPLYMENT_STATE_EDITTING": ([("edit", {})], 204),
    "APPLYMENT_STATE_WAITTING_FOR_AUDIT": ([], 204),
    "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT": ([("approve", {})], 204),
    "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON": ([("approve", {}), ("confirm_contact", {})], 204),
    "APPLYMENT_STATE_PASSED": ([("pass", {})], 400),
    "APPLYMENT_STATE_REJECTED": (
        [("reject", {"reject_param": "merchant_name", "reject_reason": "不一致"})],
        204,
    ),
    "APPLYMENT_STATE_FREEZED": ([("freeze", {})], 400),
    "APPLYMENT_STATE_CANCELED": ([], 204),
}


def test_cancel_in_every_state(chan: ApiClient, control: TestClient) -> None:
    for n, (state, (steps, expected)) in enumerate(PATHS.items()):
        code = f"cs_{n}"
        applyment_id = submit_ok(chan, code)
        for name, body in steps:
            act_ok(control, applyment_id, name, **body)
        if state == "APPLYMENT_STATE_CANCELED":
            _assert_204(chan.post(f"{BASE}/{code}/cancel"))
        assert state_of(chan, applyment_id) == state
        resp = chan.post(f"{BASE}/{code}/cancel")
        if expected == 204:
            _assert_204(resp)
            assert state_of(chan, applyment_id) == "APPLYMENT_STATE_CANCELED", state
        else:
            err = _error(resp, 400, "INVALID_REQUEST")
            assert state in err["message"] and err["detail"]["state"] == state
            assert state_of(chan, applyment_id) == state


# --- resubmission per state ----------------------------------------------------------------------------


def test_editing_applyment_takes_new_materials(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "ed_1")
    act_ok(control, applyment_id, "edit")
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_EDITTING"
    resp = submit(chan, make_body(chan, "ed_1", merchant_name="改过的公司名称"))
    assert resp.json()["applyment_id"] == applyment_id
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    view = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    assert view["materials"]["subject_info"]["business_license_info"]["merchant_name"] == "改过的公司名称"


@pytest.mark.parametrize("final", ["reject", "cancel"])
def test_spent_business_code_is_refused(chan: ApiClient, control: TestClient, final: str) -> None:
    applyment_id = submit_ok(chan, "sp_1")
    if final == "reject":
        act_ok(control, applyment_id, "reject", reject_param="merchant_name", reject_reason="公司名称不一致")
    else:
        _assert_204(chan.post(f"{BASE}/sp_1/cancel"))
    err = _error(submit(chan, make_body(chan, "sp_1")), 400, "INVALID_REQUEST")
    assert "business_code" in err["message"]
    assert submit_ok(chan, "sp_2") != applyment_id


# --- A4 -------------------------------------------------------------------------------------------------


def test_merchant_state_unknown_and_bad(chan: ApiClient) -> None:
    resp = chan.get(f"{BASE}/merchants/1239876543/state")
    assert resp.status_code == 200 and resp.json() == {"authorize_state": "AUTHORIZE_STATE_UNAUTHORIZED"}
    err = _error(chan.get(f"{BASE}/merchants/12ab/state"), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == "sub_mchid"
    _error(chan.get(f"{BASE}/merchants/{'1' * 33}/state"), 400, "PARAM_ERROR")


def test_submit_as_institution_full_flow(inst: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(inst, "inst_flow", confirm=[SUB_X])
    act_ok(control, applyment_id, "approve")
    act_ok(control, applyment_id, "confirm_contact")
    act_ok(control, applyment_id, "confirm_legalperson")
    assert state_of(inst, applyment_id) == "APPLYMENT_STATE_PASSED"
    assert (
        inst.get(f"{BASE}/merchants/{SUB_X}/state").json()["authorize_state"]
        == "AUTHORIZE_STATE_UNAUTHORIZED"
    )
    act_ok(control, applyment_id, "authorize")
    assert (
        inst.get(f"{BASE}/merchants/{SUB_X}/state").json()["authorize_state"] == "AUTHORIZE_STATE_AUTHORIZED"
    )
    assert inst.mchid == SP_B and SP_C != SP_A


def test_concurrent_identical_submits_make_one_applyment(chan: ApiClient, control: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bodies = [make_body(chan, "race_1") for _ in range(4)]  # four encryptions of the same data
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: submit(chan, b), bodies))
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    assert len({r.json()["applyment_id"] for r in results}) == 1
    listed = control.get("/sandbox/apply4subject/applyments", params={"mchid": SP_A}).json()["data"]
    assert [a["business_code"] for a in listed] == ["race_1"]


def test_the_control_list_pages_past_the_newest_two_hundred(control: TestClient) -> None:
    """GET /sandbox/apply4subject/applyments showed the newest 200 and nothing said more existed."""
    codes = [f"page_{i:03d}" for i in range(205)]
    section = {"applyments": [{"mchid": SP_A, "business_code": c} for c in codes]}
    assert control.post("/sandbox/scenario", json={"apply4subject": section}).status_code == 200
    url = "/sandbox/apply4subject/applyments"
    first = control.get(url, params={"mchid": SP_A}).json()
    assert len(first["data"]) == 200 and first["next_offset"] == 200
    rest = control.get(url, params={"mchid": SP_A, "offset": first["next_offset"]}).json()
    assert rest["next_offset"] is None
    listed = [a["business_code"] for a in first["data"] + rest["data"]]
    assert listed == codes[::-1]  # newest first, each once
    small = control.get(url, params={"limit": 3}).json()
    assert [a["business_code"] for a in small["data"]] == codes[:-4:-1] and small["next_offset"] == 3
    refused = control.get(url, params={"limit": 501})
    assert (refused.status_code, refused.json()["code"]) == (400, "PARAM_ERROR")


@pytest.mark.parametrize(
    "url",
    [
        "/sandbox/apply4subject/authorizations",
        "/sandbox/apply4subject/auto-policy",
        "/sandbox/webizpay/templates",
    ],
)
def test_control_reads_wait_for_no_writer(control: TestClient, app: WxPartnerApp, url: str) -> None:
    """These GETs read inside a write transaction: each queued for the single writer's turn (SQLite)
    behind whatever write was running."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, app.state.db.write():  # a write in progress
        listing = pool.submit(control.get, url)
        done = listing.exception(timeout=10) is None and listing.result().status_code == 200
    assert done, "the read waited for the writer"
