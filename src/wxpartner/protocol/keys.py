"""Key and certificate loading, serials, and key material for the sandbox (spec: protocol.md §3.2, §7).

Loading a PEM private key costs tens of milliseconds: callers load once per process and keep it.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PemSource = str | bytes | Path


class KeyLoadError(ValueError):
    """A key or certificate that cannot be read; the message names what was expected."""


# Base64 text (what lies between PEM armor lines) long enough to be key material, not a file name.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


def looks_like_key_material(text: str) -> bool:
    """``text`` (given where PEM text or a path is expected, without a ``-----BEGIN`` line) is not a path
    but key material that lost its armor: it must not be opened as a file, whose error names the "path"
    (``FileNotFoundError: ... 'MIIEv...'``), nor echoed in any message."""
    return "\n" in text or len(text) > 1024 or _BASE64_RUN.fullmatch(text) is not None


def _pem_bytes(source: PemSource) -> bytes:
    if isinstance(source, Path):
        return source.read_bytes()
    if isinstance(source, bytes):
        return source
    if "-----BEGIN" in source:
        return source.encode("ascii")
    if looks_like_key_material(source):
        raise KeyLoadError(
            f"neither PEM text (no '-----BEGIN' line) nor a file path: {len(source)} characters that look "
            "like key material (not shown); give the whole PEM file's text or its path"
        )
    return Path(source).read_bytes()


def load_private_key(source: PemSource, *, validated: bool = False) -> rsa.RSAPrivateKey:
    """PKCS#8 (``BEGIN PRIVATE KEY``) or PKCS#1 (``BEGIN RSA PRIVATE KEY``) PEM, as text, bytes or path.

    ``validated=True`` skips cryptography's RSA consistency check, nearly all of a load's ≈ 40 ms
    (0.05 ms without it), for a key checked when it was stored: the server's platform keys, which
    are generated here or pass through this function, checked, when a scenario supplies them."""
    try:
        key = serialization.load_pem_private_key(
            _pem_bytes(source), password=None, unsafe_skip_rsa_key_validation=validated
        )
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"not an unencrypted PEM RSA private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyLoadError("only RSA private keys are supported")
    return key


def load_public_key(source: PemSource) -> rsa.RSAPublicKey:
    """A ``PUBLIC KEY``/``RSA PUBLIC KEY`` PEM, or the public key of a PEM certificate."""
    data = _pem_bytes(source)
    if b"BEGIN CERTIFICATE" in data:
        return certificate_public_key(load_certificate(data))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"not a PEM RSA public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError("only RSA public keys are supported")
    return key


def load_certificate(source: PemSource) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_pem_bytes(source))
    except ValueError as exc:
        raise KeyLoadError(f"not a PEM X.509 certificate: {exc}") from exc


def certificate_public_key(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError("only RSA certificates are supported")
    return key


def certificate_serial(cert: x509.Certificate) -> str:
    """Upper-case hex without leading zeros, as the official SDKs print serials."""
    return format(cert.serial_number, "X")


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey, *, pkcs1: bool = False) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode("ascii")


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def new_serial_number() -> int:
    """A positive 160-bit-sized serial that prints as exactly 40 hex digits, like real ones."""
    return (1 << 156) + secrets.randbits(158) % ((1 << 159) - (1 << 156))


def issue_certificate(
    subject_key: rsa.RSAPrivateKey,
    common_name: str,
    *,
    organization: str = "wxpartner sandbox",
    issuer_key: rsa.RSAPrivateKey | None = None,
    issuer_name: str = "wxpartner sandbox CA",
    valid_days: int = 5 * 365,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """An X.509 certificate for ``subject_key``, signed by ``issuer_key`` (self-signed when absent)."""
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        ]
    )
    issuer = (
        subject if issuer_key is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
    )
    return builder.sign(issuer_key or subject_key, hashes.SHA256())
