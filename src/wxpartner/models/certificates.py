"""GET /v3/certificates: the platform certificates, each AES-256-GCM encrypted with the APIv3 key."""

from __future__ import annotations

from typing import Literal

from .common import Rfc3339, WxModel


class CertificatesQuery(WxModel):
    algorithm_type: Literal["RSA", "SM2", "ALL"] | None = None


class EncryptCertificate(WxModel):
    algorithm: str
    nonce: str
    associated_data: str
    ciphertext: str


class PlatformCertificate(WxModel):
    serial_no: str
    effective_time: Rfc3339
    expire_time: Rfc3339
    encrypt_certificate: EncryptCertificate


class CertificatesResponse(WxModel):
    data: list[PlatformCertificate]
