"""GET /v3/certificates — platform-certificate download (certificate and migrating key modes)."""

from __future__ import annotations

import datetime as dt

from ...domain.merchants import KeyMode
from ...models.certificates import (
    CertificatesQuery,
    CertificatesResponse,
    EncryptCertificate,
    PlatformCertificate,
)
from ...protocol.crypto import aes_gcm_encrypt, new_gcm_nonce
from ...protocol.errors import ApiError
from ...protocol.times import format_rfc3339
from ..context import Ctx
from ..operations import operation


@operation(
    "GET",
    "/v3/certificates",
    op_id="certificates.list",
    summary="下载平台证书 (download platform certificates)",
    query=CertificatesQuery,
    response=CertificatesResponse,
    tags=("certificates",),
)
def list_certificates(ctx: Ctx, path: dict[str, str], query: CertificatesQuery) -> CertificatesResponse:
    merchant = ctx.caller.merchant
    if merchant.key_mode == KeyMode.PUBLIC_KEY:
        # Real behaviour for public-key-only merchants: there are no platform certificates to download.
        raise ApiError(
            "RESOURCE_NOT_EXISTS",
            "商户未使用平台证书：this merchant is in WeChat Pay public-key mode (PUB_KEY_ID_...), "
            "verify with the public key instead",
        )
    if not merchant.apiv3_key:
        raise ApiError("INVALID_REQUEST", "商户未设置APIv3密钥 (no APIv3 key is set for this merchant)")
    data = []
    for key in ctx.state.keyring.certificates():
        nonce = new_gcm_nonce()
        data.append(
            PlatformCertificate(
                serial_no=key.key_id,
                effective_time=format_rfc3339(dt.datetime.fromtimestamp(key.row.not_before, dt.UTC)),
                expire_time=format_rfc3339(dt.datetime.fromtimestamp(key.row.not_after, dt.UTC)),
                encrypt_certificate=EncryptCertificate(
                    algorithm="AEAD_AES_256_GCM",
                    nonce=nonce,
                    associated_data="certificate",
                    ciphertext=aes_gcm_encrypt(
                        merchant.apiv3_key, nonce, "certificate", key.row.certificate_pem or ""
                    ),
                ),
            )
        )
    return CertificatesResponse(data=data)
