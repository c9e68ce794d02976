"""Both sides of the WeChat Pay APIv3 wire protocol. Every byte that is signed is built here."""

from .authorization import Authorization, AuthorizationFormatError, parse_authorization
from .crypto import DecryptionError, aes_gcm_decrypt, aes_gcm_encrypt, oaep_decrypt, oaep_encrypt
from .errors import CATALOGUE, ApiError, param_error, status_for
from .keys import (
    KeyLoadError,
    certificate_serial,
    load_certificate,
    load_private_key,
    load_public_key,
)
from .messages import canonical_url, request_message, response_message
from .signing import new_hex_nonce, new_nonce, sign, verify
from .times import format_rfc3339, parse_rfc3339

__all__ = [
    "CATALOGUE",
    "ApiError",
    "Authorization",
    "AuthorizationFormatError",
    "DecryptionError",
    "KeyLoadError",
    "aes_gcm_decrypt",
    "aes_gcm_encrypt",
    "canonical_url",
    "certificate_serial",
    "format_rfc3339",
    "load_certificate",
    "load_private_key",
    "load_public_key",
    "new_hex_nonce",
    "new_nonce",
    "oaep_decrypt",
    "oaep_encrypt",
    "param_error",
    "parse_authorization",
    "parse_rfc3339",
    "request_message",
    "response_message",
    "sign",
    "status_for",
    "verify",
]
