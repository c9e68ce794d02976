"""The signing floor: the least an APIv3 server can do per request on this machine.

It parses the Authorization header, checks the timestamp window, verifies the RSA signature over the
request message and signs a small JSON response, served as `wxpartner serve` serves (the same worker
supervisor, HTTP protocol and worker count). It has no database, no validation and no routing:
whatever wxpartner costs beyond this is the price of being a real server. Configured through the
environment: ``BENCH_MERCHANT_CERT`` (PEM path of the merchant certificate whose key signs the requests).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wxpartner.protocol import constants as c
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import AuthorizationFormatError, parse_authorization
from wxpartner.protocol.messages import canonical_url, request_message, response_message
from wxpartner.protocol.signing import new_hex_nonce, sign, verify

_cert = k.load_certificate(Path(os.environ["BENCH_MERCHANT_CERT"]).read_bytes())
MERCHANT_KEY = k.certificate_public_key(_cert)
PLATFORM_KEY = k.generate_private_key()
PLATFORM_SERIAL = "PUB_KEY_ID_0000000000000000000000000000000000"


def _signed(status: int, body: bytes) -> Response:
    ts, nonce = str(int(time.time())), new_hex_nonce()  # as wxpartner answers
    headers = {
        c.H_REQUEST_ID: uuid.uuid4().hex,
        c.H_TIMESTAMP: ts,
        c.H_NONCE: nonce,
        c.H_SERIAL: PLATFORM_SERIAL,
        c.H_SIGNATURE_TYPE: c.SIGNATURE_TYPE,
        c.H_SIGNATURE: sign(PLATFORM_KEY, response_message(ts, nonce, body)),
    }
    return Response(body, status, headers=headers, media_type=c.JSON_CONTENT_TYPE)


async def endpoint(request: Request) -> Response:
    body = await request.body()
    try:
        auth = parse_authorization(request.headers.get(c.H_AUTHORIZATION, ""))
    except AuthorizationFormatError:
        return _signed(401, b'{"code":"SIGN_ERROR","message":"bad authorization"}')
    if abs(time.time() - int(auth.timestamp)) > c.DEFAULT_TIME_WINDOW_SECONDS:
        return _signed(401, b'{"code":"SIGN_ERROR","message":"stale"}')
    raw_path = request.scope["raw_path"].decode("latin-1")
    query = request.scope["query_string"].decode("latin-1") or None
    message = request_message(
        request.method, canonical_url(raw_path, query), auth.timestamp, auth.nonce_str, body
    )
    if not verify(MERCHANT_KEY, message, auth.signature):
        return _signed(401, b'{"code":"SIGN_ERROR","message":"signature mismatch"}')
    return _signed(200, json.dumps({"mchid": auth.mchid, "ok": True}).encode())


app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "DELETE"])])


if __name__ == "__main__":  # python -m bench.floor PORT WORKERS: served exactly as `wxpartner serve` serves
    import sys

    from wxpartner.server import workers as serving

    config = serving.config_for(
        "bench.floor:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
    serving.run(int(sys.argv[2]), config)
