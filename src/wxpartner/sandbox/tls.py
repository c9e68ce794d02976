"""HTTPS for ``wxpartner serve --tls``: a certificate authority of the data dir's own and a server
certificate it signs for WeChat Pay's API host names, so a client that hard-codes
``https://api.mch.weixin.qq.com`` reaches this server unmodified once that name resolves here (a hosts
file entry) and it trusts ``<data-dir>/tls/ca.pem``.

The authority is made once and kept, so what a client was told to trust stays trusted; the server
certificate is issued again from it when it nears its end or lacks a name the server is asked to serve.
Private keys are owner-only files; nothing here is a WeChat Pay key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .material import write_files

PEM = serialization.Encoding.PEM

# WeChat Pay's API hosts (the primary and the backup an SDK fails over to) and the loopback names.
API_HOSTS = ("api.mch.weixin.qq.com", "api2.mch.weixin.qq.com")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 397  # the longest a public server certificate may be valid: clients that check accept it
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path  # what clients trust (public)
    certificate_path: Path  # the server's chain: its certificate, then the authority's
    key_path: Path  # the server's private key (0600)


def names_for(host: str) -> list[str]:
    """The names the server certificate covers: WeChat Pay's hosts, loopback, and the host served on
    (unless it is a wildcard address)."""
    names = [*API_HOSTS, *LOOPBACK]
    if host not in ("", "0.0.0.0", "::"):
        try:
            host = str(ipaddress.ip_address(host))  # one spelling of an address: "0:0::1" is "::1"
        except ValueError:
            host = host.lower()
        if host not in names:
            names.append(host)
    return names


def ensure_tls(data_dir: Path, host: str, *, now: dt.datetime | None = None) -> TlsFiles:
    """The files ``serve --tls`` uses, made or renewed as needed under ``<data_dir>/tls``."""
    now = now or dt.datetime.now(dt.UTC)
    out = data_dir / "tls"
    files = TlsFiles(out / "ca.pem", out / "server.pem", out / "server-key.pem")
    ca_key_path = out / "ca-key.pem"
    ca = _load_pair(files.ca_path, ca_key_path)
    if ca is None or ca[0].not_valid_after_utc - now < RENEW_BEFORE:
        ca = _new_authority(now)
        out.mkdir(parents=True, exist_ok=True)
        write_files([(ca_key_path, _key_pem(ca[1]), True), (files.ca_path, ca[0].public_bytes(PEM), False)])
    names = names_for(host)
    current = _load_pair(files.certificate_path, files.key_path)
    if current is None or not _fits(current[0], ca[0], names, now):
        cert, key = _new_server_certificate(ca, names, now)
        chain = cert.public_bytes(PEM) + ca[0].public_bytes(PEM)
        write_files([(files.key_path, _key_pem(key), True), (files.certificate_path, chain, False)])
    return files


def _fits(cert: x509.Certificate, ca: x509.Certificate, names: list[str], now: dt.datetime) -> bool:
    """Signed by this authority, not near its end, and naming everything asked for."""
    if cert.issuer != ca.subject or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    covered = {*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))}
    return all(n in covered for n in names)


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """A certificate and its EC key as this module writes them; None for anything else (absent,
    unreadable, another kind of key, or a key that is not the certificate's)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())  # the first of a chain
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _new_authority(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wxpartner sandbox"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"wxpartner local CA {x509.random_serial_number():x}"[:64]
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_certificate(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], names: list[str], now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    end = min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, API_HOSTS[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(
        "ascii"
    )
