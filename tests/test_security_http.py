"""The served HTTP/1.1 layer (uvicorn + httptools, server/http_protocol.py) against request smuggling
and path tricks, over raw sockets to a real ``wxpartner serve`` on loopback: an ambiguous frame is a
WeChat 400 that closes the connection, and what was smuggled behind it is never answered (so never
run); a signed request pipelined behind a refused one is answered as itself; a dot-segment or
percent-encoded path never reaches the control API without its token."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from live import LiveServer, start_live_server
from support import SP_A, SP_B, World, sign_request

SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
RANGES = f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}"

AMBIGUOUS = {
    "Content-Length and Transfer-Encoding": (
        b"POST /v3/webizpay/stores/entity-matches HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "two Content-Lengths": (
        b"POST /v3/webizpay/stores/entity-matches HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Content-Length: " + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED
    ),
    "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n"
    + SMUGGLED,
    "chunk size overflow": (
        b"POST /v3/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffffff\r\nab\r\n0\r\n\r\n" + SMUGGLED
    ),
    "bare LF": b"GET /healthz HTTP/1.1\nHost: x\n\n" + SMUGGLED,
    "Transfer-Encoding chunked, identity": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
        + SMUGGLED
    ),
    "unknown Transfer-Encoding": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "Content-Length with a sign": (
        b"POST /v3/x HTTP/1.1\r\nHost: x\r\nContent-Length: +"
        + str(len(SMUGGLED)).encode()
        + b"\r\n\r\n"
        + SMUGGLED
    ),
    "space before the colon": (
        b"POST /v3/x HTTP/1.1\r\nHost: x\r\nContent-Length : "
        + str(len(SMUGGLED)).encode()
        + b"\r\n\r\n"
        + SMUGGLED
    ),
}


@pytest.fixture(scope="module")
def live(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("http") / "live", world)
    yield server
    server.stop()


def _exchange(server: LiveServer, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection (or 5 s of silence)."""
    port = urlsplit(server.url).port
    assert port is not None
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def _answers(stream: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in the stream (every one has a Content-Length)."""
    out = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length"
        )
        out.append((status, rest[:length]))
        stream = rest[length:]
    return out


def _signed(world: World, mchid: str, target: str, last: bool = False) -> bytes:
    s = sign_request(world.merchants[mchid], "GET", target)
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in s.headers.items())
    return (head + ("Connection: close\r\n" if last else "") + "\r\n").encode()


@pytest.mark.parametrize("name", list(AMBIGUOUS))
def test_an_ambiguous_frame_is_refused_and_nothing_behind_it_is_answered(live: LiveServer, name: str) -> None:
    answers = _answers(_exchange(live, AMBIGUOUS[name]))
    assert len(answers) == 1, answers  # the smuggled GET /healthz got no answer of its own
    status, body = answers[0]
    assert status == 400 and json.loads(body)["code"] == "INVALID_REQUEST", (status, body)


def test_a_signed_request_pipelined_behind_refused_ones_is_answered_as_itself(
    live: LiveServer, world: World
) -> None:
    stream = (
        b"GET /v3/nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        + _signed(world, SP_B, RANGES)  # B naming A: refused
        + _signed(world, SP_A, RANGES, last=True)
    )
    answers = _answers(_exchange(live, stream))
    assert [s for s, _ in answers] == [404, 403, 200], answers
    assert json.loads(answers[2][1]) == {"sp_mchid": SP_A, "range_list": []}


@pytest.mark.parametrize(
    "target",
    [
        "/v3/../sandbox/merchants",
        "/dashboard/../sandbox/merchants",
        "/v3/%2e%2e/sandbox/merchants",
        "/%73andbox/merchants",
        "/sandbox%2fmerchants",
        "/sandbox/./merchants",
        "http://127.0.0.1/sandbox/merchants",
        "//sandbox/merchants",
    ],
)
def test_no_path_spelling_reaches_the_control_api_without_the_token(live: LiveServer, target: str) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    answers = _answers(_exchange(live, request))
    assert len(answers) == 1 and answers[0][0] in (400, 401, 404), answers
    assert b"1230000001" not in answers[0][1]  # no merchant listed
