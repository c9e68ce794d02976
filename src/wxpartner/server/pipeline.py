"""One APIv3 request, start to finish: route -> verify -> validate -> handle -> render -> sign.

Runs synchronously (in a worker thread of the ASGI server) on framework-free values, so the whole
protocol path can be tested without HTTP and costs one thread hop per request.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..protocol import constants as c
from ..protocol.detail import shown_value
from ..protocol.errors import ApiError
from ..protocol.messages import response_message
from ..protocol.request_ids import new_request_id
from ..protocol.signing import new_hex_nonce, sign
from .context import Ctx
from .http import RawRequest, RawResponse
from .logs import shown_path
from .validation import parse_body, parse_mapping, single_values

if TYPE_CHECKING:
    from .app import AppState
    from .keyring import PlatformKey

log = logging.getLogger("wxpartner.api")


class Reply:
    """A handler result with an explicit status (a plain model means 200, None means 204)."""

    def __init__(self, status: int, body: BaseModel | dict[str, Any] | bytes | None = None) -> None:
        self.status = status
        self.body = body


def _json_bytes(body: BaseModel | dict[str, Any] | bytes | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, BaseModel):
        return body.model_dump_json(exclude_none=True, by_alias=True).encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(err: ApiError, request_id: str) -> RawResponse:
    headers = [
        ("Content-Type", c.JSON_CONTENT_TYPE),
        (c.H_REQUEST_ID, request_id),
        ("Content-Language", "zh-CN"),
    ]
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return RawResponse(err.status, err.body_bytes(), headers)


def sign_response(resp: RawResponse, key: PlatformKey, *, probe: bool = False, tamper: bool = False) -> None:
    ts = str(int(time.time()))
    nonce = new_hex_nonce()
    signature = sign(key.private_key, response_message(ts, nonce, resp.body))
    if tamper:  # sandbox fault: a signature that does not match
        signature = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    if probe:
        signature = c.SIGNATURE_PROBE_PREFIX + signature
    resp.headers += [  # in the order of WeChat Pay's answers (spec: protocol.md §11.4)
        (c.H_TIMESTAMP, ts),
        (c.H_NONCE, nonce),
        (c.H_SERIAL, key.key_id),
        (c.H_SIGNATURE_TYPE, c.SIGNATURE_TYPE),
        (c.H_SIGNATURE, signature),
    ]


@dataclass(slots=True)
class Shaping:
    """What sandbox faults do to an answer besides its body: probe or tamper with the signature, delay
    it. The delay is awaited by the ASGI app, so a slow answer holds neither a thread nor the loop."""

    probe: bool = False
    tamper: bool = False
    delay_s: float = 0.0


class DropConnection(Exception):
    """Raised by a before-handler (sandbox fault): answer nothing, the server drops the connection."""


class Pipeline:
    def __init__(self, state: AppState) -> None:
        self.state = state

    def handle(self, req: RawRequest) -> RawResponse:
        started = time.perf_counter()
        request_id = req.request_id = new_request_id()
        st = self.state
        op, params, allowed = st.router.match(req.method, req.raw_path)
        if op is None:
            if allowed:
                err = ApiError(
                    "METHOD_NOT_ALLOWED",
                    f"请求方法不允许：{req.method} is not allowed here; use {', '.join(allowed)}",
                    detail={"location": "method", "allowed": allowed},
                )
                resp = error_response(err, request_id)
                resp.headers.append(("Allow", ", ".join(allowed)))
            else:
                # The path cut as the journal keeps it: a request line may be 64 KiB.
                resp = error_response(
                    ApiError("NOT_FOUND", f"接口不存在：{req.method} {shown_path(req.raw_path)}"), request_id
                )
            st.observe(None, req, resp, request_id, "route", started)
            return resp

        try:
            verified = st.verifier.verify(req)
        except ApiError as err:
            resp = error_response(err, request_id)
            st.observe(None, req, resp, request_id, op.op_id, started, refusal=err)
            return resp
        except (OperationalError, PoolTimeout, DBAPIError):
            log.exception("database unavailable while verifying %s", request_id)
            resp = error_response(ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试"), request_id)
            st.observe(None, req, resp, request_id, op.op_id, started)
            return resp
        except Exception:  # a bug: WeChat's SYSTEM_ERROR (journaled), not uvicorn's plain-text 500
            log.exception("unexpected error while verifying %s", request_id)
            resp = error_response(ApiError("SYSTEM_ERROR", "系统异常，请用相同参数重试"), request_id)
            st.observe(None, req, resp, request_id, op.op_id, started)
            return resp

        # A platform key rotated through another process or host: taken up before this answer is signed.
        st.keyring.follow(verified.generation)
        req.caller = verified.caller
        ctx = Ctx(st, verified.caller, verified.clock, req, request_id, op)
        shaping = Shaping()
        try:
            for hook in st.before_handlers:
                hook(ctx, shaping)
            resp = self._run(ctx, params)
        except ApiError as err:
            resp = error_response(err, request_id)
        except DropConnection:
            resp = RawResponse(0, headers=[(c.H_REQUEST_ID, request_id)], delay_s=shaping.delay_s)
            st.observe(ctx, req, resp, request_id, op.op_id, started)
            return resp
        except (OperationalError, PoolTimeout, DBAPIError):
            log.exception("database error in %s (%s)", op.op_id, request_id)
            resp = error_response(ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试"), request_id)
        except Exception:
            log.exception("unexpected error in %s (%s)", op.op_id, request_id)
            resp = error_response(ApiError("SYSTEM_ERROR", "系统异常，请用相同参数重试"), request_id)
        try:
            sign_response(resp, st.keyring.signer_for(ctx.caller), probe=shaping.probe, tamper=shaping.tamper)
        except Exception:
            log.exception("could not sign response %s", request_id)
        st.observe(ctx, req, resp, request_id, op.op_id, started)
        resp.delay_s = shaping.delay_s
        return resp

    def cut_off(self, req: RawRequest, started: float) -> RawResponse:
        """The answer to a request the server stopped before answering (``--graceful-timeout`` ran
        out, a second Ctrl-C): SYSTEM_ERROR, which WeChat Pay clients repeat with the same parameters
        (what the handler wrote is whole or absent: one transaction), signed for the caller once its
        signature was verified. Instead of uvicorn's unsigned plain-text 500, which a client reports
        as a signature or parse error. Journaled under the Request-ID the client gets; a handler that
        ran journals its own outcome under its own ID, which this entry's message names."""
        request_id = new_request_id()
        handled = req.request_id
        why = (
            f"the server stopped before answering; its handler's own entry is Request-ID {handled}"
            if handled
            else "the server stopped before handling it; nothing was applied"
        )
        resp = error_response(ApiError("SYSTEM_ERROR", f"系统繁忙，请稍后用相同参数重试 ({why})"), request_id)
        resp.headers.append(("Connection", "close"))
        if req.caller is not None:
            try:
                sign_response(resp, self.state.keyring.signer_for(req.caller))
            except Exception:
                log.exception("could not sign the answer of a request cut off by a stop")
        op = self.state.router.match(req.method, req.raw_path)[0]
        self.state.observe(None, req, resp, request_id, op.op_id if op else "route", started)
        return resp

    def _run(self, ctx: Ctx, params: dict[str, str]) -> RawResponse:
        op = ctx.operation
        req = ctx.request
        kwargs: dict[str, Any] = {}
        kwargs["path"] = parse_mapping(op.path_model, params, "path") if op.path_model else params
        if op.query_model is not None:
            query = single_values(req.query_params())
            kwargs["query"] = parse_mapping(op.query_model, query, "query")
        if op.encrypted_fields:
            self._check_wechatpay_serial(ctx)
        if op.body_model is not None:
            kwargs["body"] = parse_body(op.body_model, req.body)
        result = op.handler(ctx, **kwargs)
        status = op.status
        if isinstance(result, Reply):
            status, result = result.status, result.body
        if result is None and status == 200:
            status = 204
        body = _json_bytes(result)
        headers = [(c.H_REQUEST_ID, ctx.request_id)]
        if body:
            headers.insert(0, ("Content-Type", c.JSON_CONTENT_TYPE))
        return RawResponse(status, body, headers)

    def _check_wechatpay_serial(self, ctx: Ctx) -> None:
        serial = ctx.caller.wechatpay_serial
        if not serial:
            raise ApiError(
                "PARAM_ERROR",
                "Http头Wechatpay-Serial缺失：请求包含加密的敏感信息时必须指定加密所用的微信支付公钥ID或平台证书序列号",
                detail={
                    "field": "Wechatpay-Serial",
                    "location": "header",
                    "issue": "required when the body has encrypted fields",
                },
            )
        refusal = ctx.state.keyring.refusal(ctx.caller.merchant, serial)
        if refusal is not None:
            raise ApiError(
                "PARAM_ERROR",
                f"Http头Wechatpay-Serial无效：{shown_value(None, serial)} 不是本商户可用的微信支付公钥ID或平台证书序列号",
                detail={
                    "field": "Wechatpay-Serial",
                    "location": "header",
                    "value": shown_value(None, serial),
                    "issue": refusal,
                },
            )
