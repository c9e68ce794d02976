"""Sensitive-field RSA-OAEP (spec §8) and AES-256-GCM notification resources (spec §9.3)."""

from __future__ import annotations

import base64
import binascii
import secrets
import string

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_GCM_NONCE_ALPHABET = string.ascii_letters + string.digits


class DecryptionError(ValueError):
    """A ciphertext that is malformed or does not authenticate/decrypt under the given key."""


def oaep_encrypt(public_key: rsa.RSAPublicKey, plaintext: str) -> str:
    """RSAES-OAEP (SHA-1, MGF1-SHA-1, empty label), Base64. Randomised: never the same twice."""
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), _OAEP)).decode("ascii")


def oaep_room(public_key: rsa.RSAPublicKey) -> int:
    """The most plaintext bytes ``oaep_encrypt`` takes under this key: its size less OAEP's padding
    with SHA-1 (two 20-byte digests and two bytes), 214 for RSA-2048."""
    return public_key.key_size // 8 - 2 * 20 - 2


def oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: str) -> str:
    try:
        raw = base64.b64decode(ciphertext.encode("ascii"), validate=True)
        return private_key.decrypt(raw, _OAEP).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise DecryptionError("value is not RSA-OAEP ciphertext for this key") from exc


APIV3_KEY_RULE = "exactly 32 printable ASCII characters (they are the AES-256 key's 32 bytes)"


def is_apiv3_key(value: object) -> bool:
    """An APIv3 key's 32 characters are the AES-256 key's 32 bytes (protocol §9.3): any other text
    makes no such key (16 two-byte characters are 32 UTF-8 bytes but no key the merchant was given), and
    every callback would then fail to encrypt or decrypt. The one rule of server, scenarios, SDK, CLI."""
    return isinstance(value, str) and len(value) == 32 and value.isascii() and value.isprintable()


def _aes_key(apiv3_key: str | bytes) -> bytes:
    key = apiv3_key.encode("ascii") if isinstance(apiv3_key, str) else apiv3_key
    if len(key) != 32:
        raise ValueError("the APIv3 key must be exactly 32 bytes")
    return key


def aes_gcm_encrypt(apiv3_key: str | bytes, nonce: str, associated_data: str, plaintext: str) -> str:
    """Base64(ciphertext || 16-byte tag); IV and AAD are the UTF-8 bytes of the strings."""
    aead = AESGCM(_aes_key(apiv3_key))
    sealed = aead.encrypt(nonce.encode("utf-8"), plaintext.encode("utf-8"), associated_data.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")


def aes_gcm_decrypt(apiv3_key: str | bytes, nonce: str, associated_data: str | None, ciphertext: str) -> str:
    aead = AESGCM(_aes_key(apiv3_key))
    try:
        sealed = base64.b64decode(ciphertext.encode("ascii"), validate=True)
        plain = aead.decrypt(nonce.encode("utf-8"), sealed, (associated_data or "").encode("utf-8"))
        return plain.decode("utf-8")
    except (InvalidTag, binascii.Error, ValueError, UnicodeError) as exc:
        raise DecryptionError("resource does not authenticate under this APIv3 key") from exc


def new_gcm_nonce() -> str:
    """12 characters of [0-9A-Za-z]: their bytes are the 12-byte GCM IV."""
    return "".join(secrets.choice(_GCM_NONCE_ALPHABET) for _ in range(12))
