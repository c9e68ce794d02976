"""商户开户意愿确认 (apply4subject) wire models, shared by server and SDK (spec: apply4subject.md A1–A4).

Lengths the sources do not state are Emulator choices (the README's apply4subject section): 256 characters for
names, addresses and MediaIDs, 128 for numbers. Encrypted fields (ENC) are limited to 1024 characters of
Base64 ciphertext; their plaintext is checked after decryption (domain/apply4subject.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.config import JsonDict

from .common import Date, WxModel

ApplymentState = Literal[
    "APPLYMENT_STATE_EDITTING",
    "APPLYMENT_STATE_WAITTING_FOR_AUDIT",
    "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT",
    "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON",
    "APPLYMENT_STATE_PASSED",
    "APPLYMENT_STATE_REJECTED",
    "APPLYMENT_STATE_FREEZED",
    "APPLYMENT_STATE_CANCELED",
]
AuthorizeState = Literal["AUTHORIZE_STATE_UNAUTHORIZED", "AUTHORIZE_STATE_AUTHORIZED"]
IdType = Literal[
    "IDENTIFICATION_TYPE_IDCARD",
    "IDENTIFICATION_TYPE_OVERSEA_PASSPORT",
    "IDENTIFICATION_TYPE_HONGKONG_PASSPORT",
    "IDENTIFICATION_TYPE_MACAO_PASSPORT",
    "IDENTIFICATION_TYPE_TAIWAN_PASSPORT",
    "IDENTIFICATION_TYPE_FOREIGN_RESIDENT",
    "IDENTIFICATION_TYPE_HONGKONG_MACAO_RESIDENT",
    "IDENTIFICATION_TYPE_TAIWAN_RESIDENT",
]
SubjectType = Literal[
    "SUBJECT_TYPE_INDIVIDUAL",
    "SUBJECT_TYPE_ENTERPRISE",
    "SUBJECT_TYPE_INSTITUTIONS",
    "SUBJECT_TYPE_OTHERS",
    "SUBJECT_TYPE_MICRO",
    "SUBJECT_TYPE_GOVERNMENT",
    "SUBJECT_TYPE_INSTITUTIONS_CLONED",
]
CertType = Literal[
    "CERTIFICATE_TYPE_2388",
    "CERTIFICATE_TYPE_2389",
    "CERTIFICATE_TYPE_2390",
    "CERTIFICATE_TYPE_2391",
    "CERTIFICATE_TYPE_2392",
    "CERTIFICATE_TYPE_2393",
    "CERTIFICATE_TYPE_2394",
    "CERTIFICATE_TYPE_2395",
    "CERTIFICATE_TYPE_2396",
    "CERTIFICATE_TYPE_2399",
    "CERTIFICATE_TYPE_2400",
    "CERTIFICATE_TYPE_2520",
    "CERTIFICATE_TYPE_2521",
    "CERTIFICATE_TYPE_2522",
]
CategoryId = Literal[44, 33, 22, 41, 42, 49, 50, 51, 36, 54, 55, 32, 52]

# The "long-term" end of a validity period: `forever` appears in the official examples, 长期 in the
# Chinese UI; the exact literal is Unknown, so both are accepted.
LONG_TERM = ("forever", "长期")


def _period_end(value: str) -> str:
    if value in LONG_TERM:
        return value
    try:
        if len(value) != 10:
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date yyyy-MM-DD or forever") from None
    return value


def _valid_date_pair(value: str) -> str:
    """JSON text of a two-element array ``["begin", "end"]``, end a date or forever, begin <= end."""
    try:
        pair = json.loads(value)
    except ValueError:
        raise ValueError('expected JSON text ["yyyy-MM-DD","yyyy-MM-DD"|"forever"]') from None
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        raise ValueError('expected JSON text ["yyyy-MM-DD","yyyy-MM-DD"|"forever"]')
    begin, end = pair
    try:
        if len(begin) != 10:
            raise ValueError
        dt.date.fromisoformat(begin)
    except ValueError:
        raise ValueError(f"begin date {begin!r} is not yyyy-MM-DD") from None
    _period_end(end)
    if end not in LONG_TERM and end <= begin:
        raise ValueError("the end date must be after the begin date")
    return value


Text256 = Annotated[str, Field(min_length=1, max_length=256)]
Number128 = Annotated[str, Field(min_length=1, max_length=128)]
Media = Annotated[str, Field(min_length=1, max_length=256)]
# Ciphertext: standard Base64 (344 chars for RSA-2048); an empty string means "not given".
Encrypted = Annotated[str, Field(max_length=1024)]
# Marks the fields sent RSA-OAEP encrypted (spec: ENC): the SDK encrypts what carries it, the OpenAPI
# document shows it as `"sensitive": true`.
SENSITIVE: JsonDict = {"sensitive": True}
# Models that hold SENSITIVE fields, and the request that holds them: a ValidationError's text leaves out
# the values it refuses. The SDK validates the caller's plaintext before it encrypts it, and that text
# (``input_value=13800138000``) went wherever the caller logs exceptions. ``errors()`` keeps them (the
# server's detail rules decide there what is echoed: never a sensitive field).
HIDE_INPUT = ConfigDict(hide_input_in_errors=True)
PeriodEnd = Annotated[str, AfterValidator(_period_end)]
ValidDatePair = Annotated[str, Field(max_length=64), AfterValidator(_valid_date_pair)]
BusinessCode = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_]+$")]
MchidDigits = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]


class ContactInfo(WxModel):
    model_config = HIDE_INPUT

    contact_type: Literal["LEGAL", "SUPER"]
    name: Encrypted = Field(json_schema_extra=SENSITIVE)
    contact_id_doc_type: IdType | None = None
    id_card_number: Encrypted | None = Field(default=None, json_schema_extra=SENSITIVE)
    contact_id_doc_copy: Media | None = None
    contact_id_doc_copy_back: Media | None = None
    contact_period_begin: Date | None = None
    contact_period_end: PeriodEnd | None = None
    business_authorization_letter: Media | None = None
    mobile: Encrypted = Field(json_schema_extra=SENSITIVE)


class BusinessLicenseInfo(WxModel):
    licence_number: Number128
    licence_copy: Media
    merchant_name: Text256
    legal_person: Text256
    company_address: Text256
    licence_valid_date: ValidDatePair


class CertificateInfo(WxModel):
    cert_type: CertType
    cert_number: Number128
    cert_copy: Media
    merchant_name: Text256
    legal_person: Text256
    company_address: Text256
    cert_valid_date: ValidDatePair


class AssistProveInfo(WxModel):
    micro_biz_type: Literal["MICRO_TYPE_STORE", "MICRO_TYPE_MOBILE", "MICRO_TYPE_ONLINE"]
    store_name: Text256
    store_address_code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    store_address: Text256
    store_header_copy: Media
    store_indoor_copy: Media


class SpecialOperationInfo(WxModel):
    category_id: CategoryId
    store_indoor_copy: Annotated[list[Media], Field(max_length=20)] | None = None


class FinanceInstitutionInfo(WxModel):
    finance_type: Literal["BANK_AGENT", "PAYMENT_AGENT", "INSURANCE", "TRADE_AND_SETTLE", "OTHER"] | None = (
        None
    )
    finance_license_pics: Annotated[list[Media], Field(max_length=20)] | None = None


class SubjectInfo(WxModel):
    subject_type: SubjectType
    is_finance_institution: bool | None = None
    business_license_info: BusinessLicenseInfo | None = None
    certificate_info: CertificateInfo | None = None
    company_prove_copy: Media | None = None
    assist_prove_info: AssistProveInfo | None = None
    special_operation_info: Annotated[list[SpecialOperationInfo], Field(max_length=20)] | None = None
    finance_institution_info: FinanceInstitutionInfo | None = None


class IdentificationInfo(WxModel):
    model_config = HIDE_INPUT

    id_holder_type: Literal["LEGAL", "SUPER"] | None = None
    identification_type: IdType
    authorize_letter_copy: Media | None = None
    identification_name: Encrypted = Field(json_schema_extra=SENSITIVE)
    identification_number: Encrypted = Field(json_schema_extra=SENSITIVE)
    identification_valid_date: ValidDatePair
    identification_address: Encrypted | None = Field(default=None, json_schema_extra=SENSITIVE)
    identification_front_copy: Media
    identification_back_copy: Media | None = None
    owner: bool | None = None


class UboInfo(WxModel):
    model_config = HIDE_INPUT

    ubo_id_doc_type: IdType
    ubo_id_doc_copy: Media
    ubo_id_doc_copy_back: Media
    ubo_id_doc_name: Encrypted = Field(json_schema_extra=SENSITIVE)
    ubo_id_doc_number: Encrypted = Field(json_schema_extra=SENSITIVE)
    ubo_id_doc_address: Encrypted = Field(json_schema_extra=SENSITIVE)
    ubo_period_begin: Date
    ubo_period_end: PeriodEnd


class AdditionInfo(WxModel):
    confirm_mchid_list: Annotated[list[MchidDigits], Field(max_length=100)] | None = None


class SubmitApplymentRequest(WxModel):
    model_config = HIDE_INPUT

    channel_id: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    business_code: BusinessCode
    contact_info: ContactInfo
    subject_info: SubjectInfo
    identification_info: IdentificationInfo
    ubo_info_list: Annotated[list[UboInfo], Field(max_length=20)] | None = None
    addition_info: AdditionInfo | None = None


class SubmitApplymentQuery(WxModel):
    """The website and YAML put channel_id in the query string; accepted there too."""

    channel_id: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class SubmitApplymentResponse(WxModel):
    applyment_id: int


UINT64_MAX = 2**64 - 1


def _uint64(value: str) -> str:
    if int(value) > UINT64_MAX:  # 20 digits pass the length; seed 003 types applyment_id an integer
        raise ValueError(f"must be an unsigned 64-bit integer (at most {UINT64_MAX})")
    return value


# uint64 on the wire (a larger number is not an applyment_id: PARAM_ERROR); ids this server hands out
# fit a signed 64-bit column, so a uint64 beyond it names no applyment (404). Leading zeros name the
# same number, as every integer parser the official demos' languages use reads them (Go's
# strconv.ParseUint, Java's Long.parseLong), however many: 128 characters, the path form's limit.
ApplymentIdText = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[0-9]+$"), AfterValidator(_uint64)
]


class QueryApplymentQuery(WxModel):
    applyment_id: ApplymentIdText | None = None
    business_code: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ApplymentResult(WxModel):
    applyment_state: ApplymentState | str  # open: WeChat's merged list has more (common.py)
    qrcode_data: str | None = None
    reject_param: str | None = None
    reject_reason: str | None = None


def _cancel_key(value: str) -> str:
    # Seed 003's demo code puts business_code in this segment and applyment_id in the query: a client
    # with only the id that leaves business_code empty is told where the id goes.
    if not value:
        raise ValueError(
            "is empty: name the applyment here by its business_code or its applyment_id (seed 003: at least "
            "one); to cancel by applyment_id alone, POST /v3/apply4subject/applyment/{applyment_id}/cancel"
        )
    return value


class CancelPath(WxModel):
    """Seed 003's `{business_code}` or `{applyment_id}`: one path segment, resolved as a business_code
    first, then (all digits) as an applyment_id. Named business_code so a refusal names the seed's
    parameter (string(128); an applyment_id is at most 20 digits after any leading zeros)."""

    # minLength stays in the schema (an OpenAPI client still refuses an empty segment itself).
    business_code: Annotated[
        str, Field(max_length=128, json_schema_extra={"minLength": 1}), AfterValidator(_cancel_key)
    ]


class CancelQuery(WxModel):
    applyment_id: ApplymentIdText | None = None


class MerchantStatePath(WxModel):
    sub_mchid: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]


class MerchantAuthorizeState(WxModel):
    authorize_state: AuthorizeState | str
