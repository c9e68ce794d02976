"""An OpenAPI 3.1 document of every registered APIv3 operation, built from the operation table and the
shared pydantic models, so it cannot drift from what the server validates and returns.

Served at ``/openapi.json`` and printed by ``wxpartner openapi``. Schema fuzzers (schemathesis) drive the
server from it; the request signature is described as a header scheme they must fill in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..protocol.errors import CATALOGUE
from .operations import Operation

REF = "#/components/schemas/{model}"

ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "enum": sorted(CATALOGUE)},
        "message": {"type": "string"},
        "detail": {"type": "object"},
    },
}

# Every operation can refuse with these (verification, validation, tenancy, limits, database).
COMMON_ERRORS = {
    "400": "PARAM_ERROR / INVALID_REQUEST: the request is malformed or not allowed in this state",
    "401": "SIGN_ERROR: the request signature did not verify",
    "403": "NO_AUTH: the caller may not act on this merchant or resource",
    "404": "RESOURCE_NOT_EXISTS: no such resource for this caller",
    "413": "REQUEST_ENTITY_TOO_LARGE: the body is over the server's size limit",
    "429": "FREQUENCY_LIMITED: over the operation's rate limit",
    "500": "SYSTEM_ERROR: retry with the same parameters",
}

SIGNED_HEADERS = {
    name: {"schema": {"type": "string"}, "description": text}
    for name, text in (
        ("Request-ID", "unique id of this answer; quote it when asking for help"),
        ("Wechatpay-Timestamp", "Unix seconds the answer was signed at"),
        ("Wechatpay-Nonce", "random string of the signature"),
        ("Wechatpay-Signature", "Base64 RSA-SHA256 signature of timestamp\\nnonce\\nbody\\n"),
        ("Wechatpay-Serial", "PUB_KEY_ID_… or platform certificate serial that signed"),
        ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048"),
    )
}


def _models(ops: Iterable[Operation]) -> list[tuple[type[BaseModel], Any]]:
    seen: dict[tuple[type[BaseModel], str], None] = {}
    for op in ops:
        for model, mode in (
            (op.body_model, "validation"),
            (op.response_model, "serialization"),
        ):
            if model is not None:
                seen[(model, mode)] = None
    return list(seen)


def _parameters(model: type[BaseModel] | None, where: str, names: Iterable[str] = ()) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if model is None:
        return [{"name": n, "in": where, "required": True, "schema": {"type": "string"}} for n in names]
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        out.append(
            {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "schema": {k: v for k, v in prop.items() if k != "title"},
                **({"description": prop["description"]} if "description" in prop else {}),
            }
        )
    return out


def build(ops: list[Operation], *, server_url: str = "") -> dict[str, Any]:
    pairs = _models(ops)
    refs, defs = models_json_schema(pairs, ref_template=REF) if pairs else ({}, {"$defs": {}})
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["WechatpayError"] = ERROR_BODY
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(ops, key=lambda o: (o.template, o.method)):
        item: dict[str, Any] = {
            "operationId": f"{op.op_id}@{op.template}" if _spellings(ops, op) > 1 else op.op_id,
            "summary": op.summary or op.op_id,
            "tags": list(op.tags) or [op.op_id.split(".")[0]],
            "parameters": _parameters(op.path_model, "path", op.param_names)
            + _parameters(op.query_model, "query"),
            "security": [{"wechatpay": []}],
            "responses": _responses(op, refs),
        }
        if op.encrypted_fields:
            item["parameters"].append(
                {
                    "name": "Wechatpay-Serial",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "key that encrypted the sensitive fields",
                }
            )
        if op.body_model is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body_model, "validation")]}},
            }
        paths.setdefault(op.template, {})[op.method.lower()] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "wxpartner — WeChat Pay APIv3 partner endpoints",
            "version": __version__,
            "description": "Every request is signed (WECHATPAY2-SHA256-RSA2048) and every answer is signed "
            "by WeChat Pay's key; see the project README.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "wechatpay": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": 'WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",'
                    'serial_no="…",signature="…" over METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n',
                }
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _spellings(ops: list[Operation], op: Operation) -> int:
    return sum(1 for o in ops if o.op_id == op.op_id and o.method == op.method)


def _responses(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if op.response_model is not None and op.status != 204:
        out[str(op.status)] = {
            "description": "success",
            "headers": SIGNED_HEADERS,
            "content": {"application/json": {"schema": refs[(op.response_model, "serialization")]}},
        }
    else:
        out["204"] = {"description": "success, signed empty body", "headers": SIGNED_HEADERS}
    for status, text in COMMON_ERRORS.items():
        out[status] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="WechatpayError")}}},
        }
    return out
