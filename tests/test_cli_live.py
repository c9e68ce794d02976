"""What the CLI prints of text from outside, against a real ``wxpartner serve`` on loopback: header bytes
0x80-0xFF (C1 controls once decoded: 0x9B is a terminal's CSI), JSON strings with ESC, a merchant
endpoint's answer, a fault rule's path; and how many HTTP clients a command makes."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from live import Served
from receiver import Receiver, start_receiver
from wxpartner.cli import main
from wxpartner.client import Client

SUB = "1900000101"
# What a terminal acts on: ESC sequences (a clear screen, a colour), CSI as one byte, a bidirectional
# override that reverses the rest of the line, a line separator.
HOSTILE = "nope \x1b[2J\x1b[31mred \u009b2J \u202eevil\u2028x"


def acted_on(text: str) -> list[str]:
    """The characters of ``text`` that a terminal would act on instead of showing (line feeds aside)."""
    return [
        f"U+{ord(ch):04X}"
        for ch in text
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")
    ]


def unfolded(text: str) -> str:
    """A table's text without its borders and spaces: a cell folded across lines reads as one."""
    return re.sub(r"[\s│┃]", "", text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("terminal") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_endpoint() -> Iterator[Receiver]:
    rec = start_receiver()
    rec.status, rec.answer = 500, HOSTILE.encode()
    yield rec
    rec.stop()


def cli(served: Served, *args: str, code: int = 0) -> str:
    """A command as a person runs it (stdout not a terminal: any ESC in it came from the data), its
    stdout and stderr."""
    result = CliRunner().invoke(main, [*args, "--data-dir", str(served.data_dir)], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def raw_request(served: Served, head: bytes) -> None:
    """One request as bytes on the socket: a client can send any byte 0x80-0xFF in a header value."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n" + head)
        sock.sendall(b"Connection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def authorized_employee(served: Served, control: httpx.Client) -> None:
    """A W1 authorization: its WEBIZPAY.AUTHORIZED callback goes to the merchant's notify URL."""
    with Client.from_connection_info(served.info) as client:
        link = client.webizpay.users.authorization_url(
            "user_terminal", {"sp_mchid": client.mchid, "sub_mchid": SUB, "application_type": "H5"}
        )
    token = link.authorization_url.split("token=", 1)[1]
    assert control.post("/sandbox/webizpay/authorizations", json={"token": token}).status_code == 200


@pytest.mark.slow
def test_text_from_outside_is_shown_escaped_never_acted_on(
    served: Served, hostile_endpoint: Receiver, tmp_path: Path
) -> None:
    """Found in the CLI's audit: a User-Agent with bytes 0x9B (CSI) and 0x85, a merchant endpoint's answer
    with ESC sequences and U+202E, a value quoted in an error's detail and a fault rule's path reached
    the terminal as they were: `wxpartner callbacks list` cleared the screen. Each is shown as its
    escape (\\x9b, \\x1b, \\u202e, \\u2028), in tables, entries, JSON and error messages alike; --json
    stays the server's data."""
    control = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.info['sandbox_token']}"}, timeout=10
    )
    mchid = served.info["mchid"]
    forged = f'mchid="{mchid}",nonce_str="n",timestamp="1",serial_no="S",signature="x"'.encode()
    raw_request(
        served,
        b"User-Agent: ua\x9b2J\x9b31mRED\x85x\r\nAuthorization: WECHATPAY2-SHA256-RSA2048 "
        + forged
        + b"\r\n",
    )
    notify = {"notify_url": hostile_endpoint.url}
    assert control.put(f"/sandbox/merchants/{mchid}/notify-url", json=notify).status_code == 200
    authorized_employee(served, control)
    rule = {"kind": "LATENCY", "latency_ms": 1, "path": "/v3/none\u009b2J*", "note": HOSTILE}
    assert control.post("/sandbox/faults", json=rule).status_code == 201

    shown: dict[str, str] = {}
    shown["journal"] = cli(served, "journal", "--limit", "1000")
    rows = json.loads(cli(served, "journal", "--json"))["data"]
    ua_row = next(r for r in rows if (r["user_agent"] or "").startswith("ua"))
    assert ua_row["user_agent"] == "ua\x9b2J\x9b31mRED\x85x"  # --json: the data as it is
    shown["journal entry"] = cli(served, "journal", ua_row["request_id"])
    assert "user_agent: ua\\x9b2J\\x9b31mRED\\x85x" in shown["journal entry"]
    [notification] = json.loads(cli(served, "callbacks", "list", "--json"))["data"]
    # sent now (the server's own delivery may have sent it already: `callbacks deliver` would find
    # nothing due), answered with the hostile text; deliver prints its attempts as redeliver does
    shown["redeliver"] = cli(served, "callbacks", "redeliver", notification["id"])
    attempts = json.loads(cli(served, "callbacks", "show", notification["id"], "--json"))["attempts"]
    assert all(HOSTILE in a["error"] for a in attempts), attempts  # --json: the data as it is
    shown["callbacks list"] = cli(served, "callbacks", "list")
    shown["callbacks show"] = cli(served, "callbacks", "show", notification["id"])
    for name in ("redeliver", "callbacks list", "callbacks show"):  # a table folds its cells
        assert "nope\\x1b[2J\\x1b[31mred\\x9b2J\\u202eevil\\u2028x" in unfolded(shown[name]), name
    shown["faults"] = cli(served, "faults", "list")
    assert "/v3/none\\x9b2J*" in shown["faults"]
    assert "nope\\x1b[2J\\x1b[31mred\\x9b2J\\u202eevil\\u2028x" in unfolded(shown["faults"])  # its note
    shown["call"] = cli(
        served, "call", "POST", "/v3/webizpay/avail-mch-ranges", "-d",
        json.dumps({"sp_mchid": mchid, "identifier_type": "X\u009b2J\u202e"}),
    )  # fmt: skip
    assert '"value": "X\\u009b2J\\u202e"' in shown["call"]  # still the JSON of the same value
    shown["refusal"] = cli(served, "reset", "--yes", "--mchid", "19\x1b[2J\u009b", code=1)
    assert "merchant 19\\x1b[2J\\x9b is not registered" in shown["refusal"]
    shown["bills"] = cli(served, "bills", "--sub-mchid", "19\u009b2J", "--from", "2026-01-01", code=1)
    headers, body = tmp_path / "headers.json", tmp_path / "body.json"
    headers.write_text(json.dumps({"Wechatpay-Signature": "x", "Wechatpay-Serial": "S\u009b"}))
    body.write_text(json.dumps({"id": "N\u202e1", "event_type": "X\u001b[2J"}))
    shown["verify-callback"] = cli(
        served, "verify-callback", "--headers", str(headers), "--body", str(body), code=1
    )
    assert "event_type: X\\x1b[2J" in shown["verify-callback"] and "id: N\\u202e1" in shown["verify-callback"]
    shown["sign"] = cli(served, "sign", "--url", "/v3/x", "--body", '{"a":"\u009b\u202e"}')
    assert '{"a":"\\x9b\\u202e"}\\n' in shown["sign"]
    for name, text in shown.items():
        assert not acted_on(text), (name, acted_on(text), text)
    control.close()


@pytest.mark.slow
def test_a_command_makes_one_http_client_for_all_its_requests(
    served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Found using `bills` over three months: 27 s for 88 days, 250 ms of each day spent making a new
    httpx client (its TLS context and CA bundle) for each of the day's two requests. One client per
    command now, its connection kept: 3.6 s."""
    made: list[httpx.Client] = []
    real_init = httpx.Client.__init__

    def counted(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", counted)
    china = dt.timezone(dt.timedelta(hours=8))
    last = dt.datetime.now(china).date() - dt.timedelta(days=1)
    days = ["--from", str(last - dt.timedelta(days=2)), "--to", str(last)]
    out = json.loads(cli(served, "bills", "--sub-mchid", SUB, *days, "--out", str(tmp_path), "--json"))
    assert out["written"] == 3, out
    assert len(made) == 1  # 3 days: 6 signed requests, and the control API's platform keys
    assert all(client.is_closed for client in made)
