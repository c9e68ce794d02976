"""Callback notifications: build, sign and encrypt (server) and verify and decrypt (receiver) (spec §9)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from . import constants as c
from .crypto import aes_gcm_decrypt, aes_gcm_encrypt, new_gcm_nonce
from .messages import response_message
from .signing import new_hex_nonce, sign


@dataclass(frozen=True, slots=True)
class SignedNotification:
    body: bytes
    headers: dict[str, str]


def encrypt_resource(
    apiv3_key: str, plaintext: dict[str, Any], *, original_type: str, associated_data: str | None = None
) -> dict[str, str]:
    aad = original_type if associated_data is None else associated_data
    nonce = new_gcm_nonce()
    text = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":"))
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": aes_gcm_encrypt(apiv3_key, nonce, aad, text),
        "associated_data": aad,
        "nonce": nonce,
    }


def decrypt_resource(apiv3_key: str, resource: dict[str, Any]) -> dict[str, Any]:
    # Untrusted JSON: a non-object resource or a non-string associated_data is a ValueError, not a crash.
    if not isinstance(resource, dict):
        raise ValueError("resource is not a JSON object")
    if not isinstance(resource.get("associated_data", ""), str | None):
        raise ValueError("resource associated_data is not a string")
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise ValueError(f"unsupported resource algorithm {resource.get('algorithm')!r}")
    text = aes_gcm_decrypt(
        apiv3_key, str(resource["nonce"]), resource.get("associated_data"), str(resource["ciphertext"])
    )
    out = json.loads(text)
    if not isinstance(out, dict):
        raise ValueError("decrypted resource is not a JSON object")
    return out


def sign_notification(
    body: bytes,
    *,
    private_key: rsa.RSAPrivateKey,
    key_id: str,
    timestamp: int,
    request_id: str,
    probe: bool = False,
) -> SignedNotification:
    """Headers of a callback POST: signed exactly like a response over ``ts\\nnonce\\nbody\\n``."""
    nonce = new_hex_nonce()
    signature = sign(private_key, response_message(str(timestamp), nonce, body))
    if probe:
        signature = c.SIGNATURE_PROBE_PREFIX + signature
    return SignedNotification(
        body=body,
        headers={
            c.H_CONTENT_TYPE: "application/json",
            c.H_REQUEST_ID: request_id,
            c.H_TIMESTAMP: str(timestamp),
            c.H_NONCE: nonce,
            c.H_SIGNATURE: signature,
            c.H_SERIAL: key_id,
            c.H_SIGNATURE_TYPE: c.SIGNATURE_TYPE,
        },
    )
