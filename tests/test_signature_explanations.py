"""The journal's "signature check explained" view (control API, CLI, dashboard) shows what verification
actually decided, for many kinds of bad signature, including bytes a terminal or a browser would act on
(CR, tab) and string-to-signs longer than the journal keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, World, sign_request
from wxpartner.cli import main
from wxpartner.server.journal import MAX_MESSAGE_CHARS

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
PATH = "/v3/webizpay/users/user_audit/authorization-url"


def _send_signed_over(http: TestClient, world: World, sent: bytes, signed: bytes) -> httpx.Response:
    """POST ``sent`` with a signature over ``signed`` (what a client that re-serialised its body signs)."""
    good = sign_request(world.merchants[SP_A], "POST", PATH, signed)
    return http.post(PATH, content=sent, headers=good.headers)


def _entry(http: TestClient, resp: httpx.Response) -> dict[str, Any]:
    found = http.get(f"/sandbox/journal/{resp.headers['Request-ID']}", headers=AUTH)
    assert found.status_code == 200, found.text
    entry: dict[str, Any] = found.json()
    return entry


def _cli(http: TestClient, tmp_path: Path, *args: str) -> str:
    (tmp_path / "connection.json").write_text(json.dumps({"sandbox_token": SANDBOX_TOKEN}))
    result = CliRunner().invoke(
        main, [*args, "--data-dir", str(tmp_path)], obj={"http": http}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _dashboard(http: TestClient, request_id: str) -> str:
    http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
    page = http.get(f"/dashboard/journal/{request_id}")
    assert page.status_code == 200
    return page.text


def test_a_crlf_body_is_shown_with_its_cr(http: TestClient, world: World, tmp_path: Path) -> None:
    """Found in the sandbox audit: the CLI dropped the CR of a CRLF body and the browser turned it into
    a line feed, so the explanation showed exactly the text the client had signed (LF only) and the
    two could not be told apart."""
    sent = b'{"sp_mchid":\r\n"x",\t"a":1}'
    resp = _send_signed_over(http, world, sent, b'{"sp_mchid":\n"x",\t"a":1}')
    assert resp.status_code == 401 and resp.json()["detail"]["field"] == "signature"
    entry = _entry(http, resp)
    assert entry["expected_message"].endswith('{"sp_mchid":\r\n"x",\t"a":1}\n')
    assert entry["expected_message_length"] == len(entry["expected_message"].encode())
    assert (
        entry["expected_message_length"] == resp.json()["detail"]["sign_information"]["sign_message_length"]
    )
    assert entry["expected_message_truncated"] is False

    out = _cli(http, tmp_path, "journal", resp.headers["Request-ID"])
    assert '{"sp_mchid":␍\\n' in out and '"x",␉"a":1}\\n' in out
    assert "\r" not in out and "\t" not in out
    assert f"({entry['expected_message_length']} bytes;" in out

    page = _dashboard(http, resp.headers["Request-ID"])
    assert "{&quot;sp_mchid&quot;:␍⏎\n&quot;x&quot;,␉&quot;a&quot;:1}⏎" in page
    assert "\r" not in page
    assert f"{entry['expected_message_length']} bytes" in page


@pytest.mark.parametrize("extra", [0, 5000])
def test_a_long_or_non_utf8_message_says_its_real_length(
    http: TestClient, world: World, tmp_path: Path, extra: int
) -> None:
    """Found in the sandbox audit: the journal keeps the first 8192 characters of a string-to-sign, and
    the dashboard called those "8192 bytes" (the server had verified 13 000) while the CLI dropped the
    cut line without a word; a byte that is not UTF-8 was counted as the 3 bytes of U+FFFD."""
    sent = b'{"a":"\xff' + b"x" * (MAX_MESSAGE_CHARS + extra) + b'"}'
    resp = _send_signed_over(http, world, sent, b"{}")
    real = resp.json()["detail"]["sign_information"]["sign_message_length"]
    entry = _entry(http, resp)
    assert entry["expected_message_length"] == real
    assert entry["expected_message_truncated"] is True
    assert len(entry["expected_message"]) == MAX_MESSAGE_CHARS

    out = _cli(http, tmp_path, "journal", resp.headers["Request-ID"])
    assert f"({real} bytes;" in out
    assert '{"a":"�xxx' in out  # the cut body line is shown, marked
    assert f"only the first {MAX_MESSAGE_CHARS} characters are kept" in out

    page = _dashboard(http, resp.headers["Request-ID"])
    assert f"{real} bytes; only the first {MAX_MESSAGE_CHARS} characters are kept" in page
    assert "8192 bytes" not in page


def test_a_short_non_utf8_body_counts_its_bytes(http: TestClient, world: World) -> None:
    resp = _send_signed_over(http, world, b'{"a":"\xff\xfe"}', b"{}")
    entry = _entry(http, resp)
    assert (
        entry["expected_message_length"] == resp.json()["detail"]["sign_information"]["sign_message_length"]
    )
    assert entry["expected_message_truncated"] is False


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("wrong key", "signature"),
        ("wrong url query", "signature"),
        ("wrong timestamp signed", "signature"),
        ("stale timestamp", "timestamp"),
        ("unknown serial", "serial_no"),
        ("lower-case serial", "serial_no"),
        ("missing header", "Authorization"),
        ("lower-case header name", "signature"),
        ("extra spaces", "signature"),
        ("lower-case scheme", "Authorization"),
    ],
)
def test_the_explanation_names_what_verification_refused(
    http: TestClient, world: World, tmp_path: Path, case: str, field: str
) -> None:
    keys = world.merchants[SP_A]
    url = "/v3/certificates?offset=1&limit=2"
    kw: dict[str, Any] = {}
    if case in ("wrong key", "extra spaces"):  # spaces around parameters are accepted: a bad signature
        kw["private_key"] = world.other_key
    elif case == "stale timestamp":
        kw["timestamp"] = 1_000_000_000
    elif case == "unknown serial":
        kw["serial_no"] = "0123456789ABCDEF"
    elif case == "lower-case serial":
        kw["serial_no"] = keys.serial_no.lower()
    signed = sign_request(keys, "GET", "/v3/certificates" if case == "wrong url query" else url, **kw)
    headers = dict(signed.headers)
    auth = headers.pop("Authorization")
    if case == "wrong timestamp signed":
        ts = auth.split('timestamp="')[1].split('"')[0]
        auth = auth.replace(f'timestamp="{ts}"', f'timestamp="{int(ts) - 1}"')
    if case == "extra spaces":
        auth = auth.replace(" mchid", "   mchid").replace(",nonce_str", " ,  nonce_str")
    if case == "lower-case scheme":
        auth = auth.replace("WECHATPAY2-SHA256-RSA2048", "wechatpay2-sha256-rsa2048")
    if case == "lower-case header name":
        headers = {name.lower(): v for name, v in headers.items()}
        headers["authorization"] = auth.replace('signature="', 'signature="A')
    elif case != "missing header":
        headers["Authorization"] = auth
    resp = http.get(url, headers=headers)
    assert resp.status_code == 401
    detail = resp.json()["detail"]
    assert detail["field"] == field
    entry = _entry(http, resp)
    assert entry["verification"] == "refused" and entry["verify_field"] == field
    assert entry["verify_issue"] == detail["detail"]["issue"]
    if field == "signature":
        info = detail["sign_information"]
        assert entry["expected_message"] == info["truncated_sign_message"]
        assert entry["expected_message_length"] == info["sign_message_length"]
        assert entry["expected_message"].startswith(f"GET\n{url}\n")
    else:
        assert entry["expected_message"] is None and "expected_message_length" not in entry
    page = _dashboard(http, resp.headers["Request-ID"])
    assert f"Refused on <code>{field}</code>" in page
    assert ("expected-message" in page) is (field == "signature")
    out = _cli(http, tmp_path, "journal", resp.headers["Request-ID"])
    assert ("expected string-to-sign" in out) is (field == "signature")


def test_text_from_requests_is_printed_as_is_not_as_rich_markup(
    http: TestClient, world: World, tmp_path: Path
) -> None:
    """Found in the sandbox audit: a User-Agent or path with '[/]' made `wxpartner journal` crash with a
    rich MarkupError traceback, and '[red]' in a body vanished from the printed string-to-sign."""
    signed = sign_request(world.merchants[SP_A], "POST", PATH, b"{}")
    headers = {**signed.headers, "User-Agent": "shop[/]client [bold]1.0"}
    resp = http.post(PATH, content=b'{"a":"[red]x[/]"}', headers=headers)
    assert resp.status_code == 401
    out = _cli(http, tmp_path, "journal", resp.headers["Request-ID"])
    assert "shop[/]client [bold]1.0" in out and '{"a":"[red]x[/]"}\\n' in out
    listing = _cli(http, tmp_path, "journal", "--limit", "1")
    assert "POST" in listing  # the table renders (no MarkupError)
    bad_path = http.get("/v3/x[/]y", headers={"Accept": "*/*", "User-Agent": "a[/]"})
    assert bad_path.status_code == 404
    assert "/v3/x[/]y" in _cli(http, tmp_path, "journal", "--limit", "1")
