"""Merchants, their API certificates and relations, and WeChat Pay's platform keys."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.clock import ClockState
from ..domain.merchants import KeyMode, Merchant, RelationKind, Role
from .change_signal import GENERATION_KEY, note_change
from .db import LeanStatement
from .schema import (
    merchant_certificates,
    merchant_relations,
    merchants,
    platform_keys,
    sandbox_clock,
    sandbox_kv,
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A merchant and the certificate named by a request's ``serial_no``."""

    merchant: Merchant
    serial_no: str
    public_key_pem: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class PlatformKeyRow:
    key_id: str
    kind: str  # certificate | public_key
    mchid: str | None
    private_key_pem: str = field(repr=False)  # a logged or asserted-on row never shows the key
    public_key_pem: str
    certificate_pem: str | None
    not_before: float
    not_after: float
    retired: bool
    created_at: float


def valid_certificates(rows: Iterable[PlatformKeyRow], now: float) -> list[PlatformKeyRow]:
    """Valid, non-retired platform certificates, newest first (several during a rotation): the first
    signs a certificate-mode merchant's answers. The one rule for the key ring and connection.json."""
    certs = [
        r for r in rows if r.kind == "certificate" and not r.retired and r.not_before <= now < r.not_after
    ]
    return sorted(certs, key=lambda r: r.not_before, reverse=True)


def live_public_keys(rows: Iterable[PlatformKeyRow]) -> list[PlatformKeyRow]:
    """The WeChat Pay public keys not retired (a merchant's own, mchid set, and the shared ones)."""
    return [r for r in rows if r.kind == "public_key" and not r.retired]


def public_keys_of(rows: Iterable[PlatformKeyRow], mchid: str) -> list[PlatformKeyRow]:
    """A merchant's WeChat Pay public keys in force, newest first: its own non-retired ones, else the
    shared ones. Several during a rotation of its own key (until the old one is retired): callbacks
    are then signed with any of them, and an answer with the one the request names."""
    live = live_public_keys(rows)
    pick = [r for r in live if r.mchid == mchid] or [r for r in live if r.mchid is None]
    return sorted(pick, key=lambda r: r.created_at, reverse=True)


def public_key_of(rows: Iterable[PlatformKeyRow], mchid: str) -> PlatformKeyRow | None:
    """The WeChat Pay public key that signs a merchant's answers in public-key mode when the request
    names none of its keys: its own newest one, else the newest shared one. The one rule for the key
    ring and connection.json."""
    keys = public_keys_of(rows, mchid)
    return keys[0] if keys else None


def _merchant(row: sa.Row[tuple[object, ...]] | Mapping[str, Any]) -> Merchant:
    m = row._mapping if isinstance(row, sa.Row) else row
    return Merchant(
        mchid=m["mchid"],
        name=m["name"],
        role=Role(m["role"]),
        apiv3_key=m["apiv3_key"],
        key_mode=KeyMode(m["key_mode"]),
        notify_url=m["notify_url"],
    )


def merchant_of(row: sa.Row[tuple[object, ...]] | Mapping[str, Any]) -> Merchant:
    """A Merchant from a row of ``merchants`` (listings that select the table themselves)."""
    return _merchant(row)


# The employee's pages and control calls read merchants by number: compiled once (db.LeanStatement).
_MERCHANT = LeanStatement(
    sa.select(merchants).where(merchants.c.mchid == sa.bindparam("mchid")), tuple(merchants.c.keys())
)


def get_merchant(conn: Connection, mchid: str) -> Merchant | None:
    m = _MERCHANT.first_mapping(conn, {"mchid": mchid})
    return _merchant(m) if m else None


def list_merchants(conn: Connection) -> list[Merchant]:
    return [_merchant(r) for r in conn.execute(sa.select(merchants).order_by(merchants.c.mchid))]


# Built once: the verification hot path runs this on every request, and constructing the expression
# (and its cache key) each time cost more than executing it.
_CREDENTIAL = (
    sa.select(
        merchants,
        merchant_certificates.c.serial_no,
        merchant_certificates.c.public_key_pem,
        merchant_certificates.c.revoked,
    )
    .select_from(
        merchants.outerjoin(
            merchant_certificates,
            sa.and_(
                merchant_certificates.c.mchid == merchants.c.mchid,
                merchant_certificates.c.serial_no == sa.bindparam("serial_no"),
            ),
        )
    )
    .where(merchants.c.mchid == sa.bindparam("mchid"))
)


def get_credential(conn: Connection, mchid: str, serial_no: str) -> tuple[Merchant | None, Credential | None]:
    """One round trip: the merchant and, if registered for it, the certificate with that serial."""
    row = conn.execute(_CREDENTIAL, {"mchid": mchid, "serial_no": serial_no}).first()
    return _credential(row)


def _credential(row: sa.Row[tuple[object, ...]] | None) -> tuple[Merchant | None, Credential | None]:
    if row is None:
        return None, None
    merchant = _merchant(row)
    m = row._mapping
    if m["serial_no"] is None:
        return merchant, None
    return merchant, Credential(merchant, m["serial_no"], m["public_key_pem"], bool(m["revoked"]))


# The request verifier needs the business clock too: the same round trip carries it (scalar
# subqueries of the one-row clock table; no row means the real clock, as in sandbox.read_clock), and
# the change generation the lookup was made at (PostgreSQL's, see store/change_signal.py).
_CREDENTIAL_AND_CLOCK = _CREDENTIAL.add_columns(
    sa.select(sandbox_clock.c.offset_seconds)
    .where(sandbox_clock.c.id == 1)
    .scalar_subquery()
    .label("wx_clock_offset"),
    sa.select(sandbox_clock.c.frozen_at)
    .where(sandbox_clock.c.id == 1)
    .scalar_subquery()
    .label("wx_clock_frozen_at"),
    sa.select(sandbox_kv.c.value)
    .where(sandbox_kv.c.key == GENERATION_KEY)
    .scalar_subquery()
    .label("wx_generation"),
)


# Every request runs it: compiled once per dialect, executed on the driver cursor (db.LeanStatement).
_LEAN_CREDENTIAL_AND_CLOCK = LeanStatement(
    _CREDENTIAL_AND_CLOCK, tuple(_CREDENTIAL_AND_CLOCK.selected_columns.keys())
)


def get_credential_and_clock(
    conn: Connection, mchid: str, serial_no: str
) -> tuple[Merchant | None, Credential | None, ClockState]:
    """``get_credential`` plus the sandbox clock (``sandbox.read_clock``), in one statement."""
    return get_credential_clock_generation(conn, mchid, serial_no)[0]


def get_credential_clock_generation(
    conn: Connection, mchid: str, serial_no: str
) -> tuple[tuple[Merchant | None, Credential | None, ClockState], str | None]:
    """``get_credential_and_clock`` and the change generation it was read at, in one statement."""
    m = _LEAN_CREDENTIAL_AND_CLOCK.first_mapping(conn, {"mchid": mchid, "serial_no": serial_no})
    if m is None:  # unknown merchant: the request is refused, the clock read the usual way
        from .sandbox import read_clock

        return (None, None, read_clock(conn)), None
    offset = m["wx_clock_offset"]
    frozen = m["wx_clock_frozen_at"]
    clock = ClockState.stored(offset, frozen) if offset is not None else ClockState()
    merchant = _merchant(m)
    generation = m["wx_generation"]
    if m["serial_no"] is None:
        return (merchant, None, clock), generation
    credential = Credential(merchant, m["serial_no"], m["public_key_pem"], bool(m["revoked"]))
    return (merchant, credential, clock), generation


# One statement, so one snapshot on PostgreSQL (autocommit): the pairs and the generation they are at.
_REGISTERED = (
    sa.select(
        merchants.c.mchid,
        merchant_certificates.c.serial_no,
        sa.select(sandbox_kv.c.value)
        .where(sandbox_kv.c.key == GENERATION_KEY)
        .scalar_subquery()
        .label("wx_generation"),
    )
    .select_from(
        merchants.outerjoin(merchant_certificates, merchant_certificates.c.mchid == merchants.c.mchid)
    )
    .limit(sa.bindparam("limit"))
)


def registered_pairs(conn: Connection, limit: int) -> list[tuple[str, str | None, Any]]:
    """At most ``limit`` registered (mchid, serial_no) pairs, serial_no None for a merchant without a
    certificate, revoked ones included, each with the change generation (None before the first)."""
    return [(row[0], row[1], row[2]) for row in conn.execute(_REGISTERED, {"limit": limit})]


def serial_owner(conn: Connection, serial_no: str) -> str | None:
    return conn.execute(
        sa.select(merchant_certificates.c.mchid).where(merchant_certificates.c.serial_no == serial_no)
    ).scalar()


def upsert_merchant(conn: Connection, merchant: Merchant) -> None:
    note_change(conn)
    values = {
        "name": merchant.name,
        "role": merchant.role.value,
        "apiv3_key": merchant.apiv3_key,
        "key_mode": merchant.key_mode.value,
        "notify_url": merchant.notify_url,
    }
    updated = conn.execute(merchants.update().where(merchants.c.mchid == merchant.mchid).values(**values))
    if updated.rowcount == 0:
        conn.execute(merchants.insert().values(mchid=merchant.mchid, created_at=time.time(), **values))


# The pytest plugin's reset reads them before every test: compiled once (db.LeanStatement).
_NOTIFY_URLS = LeanStatement(sa.select(merchants.c.mchid, merchants.c.notify_url))
# Applied iff a row comes back (RETURNING: rowcount is not reliable on every driver).
_SET_NOTIFY_URL = LeanStatement(
    merchants.update()
    .where(merchants.c.mchid == sa.bindparam("mchid"))
    .values(notify_url=sa.bindparam("url"))
    .returning(merchants.c.mchid)
)


def notify_urls(conn: Connection) -> dict[str, str | None]:
    """Every merchant's notify URL (None: none set)."""
    return {mchid: url for mchid, url in _NOTIFY_URLS.rows(conn, {})}


def set_notify_url(conn: Connection, mchid: str, url: str | None) -> bool:
    note_change(conn)
    return _SET_NOTIFY_URL.first(conn, {"mchid": mchid, "url": url}) is not None


def set_key_mode(conn: Connection, mchid: str, key_mode: KeyMode) -> KeyMode | None:
    """Switch a merchant's key mode, nothing else of it; returns the mode it had (None: no merchant)."""
    before = conn.execute(sa.select(merchants.c.key_mode).where(merchants.c.mchid == mchid)).scalar()
    if before is None:
        return None
    note_change(conn)  # its remembered credentials carry the mode (server/credential_cache.py)
    conn.execute(merchants.update().where(merchants.c.mchid == mchid).values(key_mode=key_mode.value))
    return KeyMode(before)


def add_certificate(
    conn: Connection, mchid: str, serial_no: str, public_key_pem: str, certificate_pem: str | None = None
) -> None:
    note_change(conn)
    conn.execute(sa.delete(merchant_certificates).where(merchant_certificates.c.serial_no == serial_no))
    conn.execute(
        merchant_certificates.insert().values(
            serial_no=serial_no,
            mchid=mchid,
            public_key_pem=public_key_pem,
            certificate_pem=certificate_pem,
            revoked=False,
            created_at=time.time(),
        )
    )


def revoke_certificate(conn: Connection, serial_no: str) -> bool:
    note_change(conn)
    stmt = merchant_certificates.update().where(merchant_certificates.c.serial_no == serial_no)
    return conn.execute(stmt.values(revoked=True)).rowcount > 0


def list_certificates(conn: Connection, mchid: str) -> list[dict[str, object]]:
    rows = conn.execute(
        sa.select(
            merchant_certificates.c.serial_no,
            merchant_certificates.c.revoked,
            merchant_certificates.c.public_key_pem,
            merchant_certificates.c.certificate_pem,
        ).where(merchant_certificates.c.mchid == mchid)
    )
    return [dict(r._mapping) for r in rows]


def add_relation(conn: Connection, parent: str, child: str, kind: RelationKind) -> None:
    exists = conn.execute(
        sa.select(merchant_relations.c.parent_mchid).where(
            merchant_relations.c.parent_mchid == parent,
            merchant_relations.c.child_mchid == child,
            merchant_relations.c.kind == kind.value,
        )
    ).first()
    if not exists:
        conn.execute(
            merchant_relations.insert().values(
                parent_mchid=parent, child_mchid=child, kind=kind.value, created_at=time.time()
            )
        )


def relation_clause(parent: Any, child: Any, kind: Any) -> sa.ColumnElement[bool]:
    """The row condition "``child`` is ``parent``'s relation of ``kind``" (values or bind parameters),
    for statements that read a relation alongside something else."""
    return sa.and_(
        merchant_relations.c.parent_mchid == parent,
        merchant_relations.c.child_mchid == child,
        merchant_relations.c.kind == kind,
    )


# Built once, like _CREDENTIAL: most business requests check a relation first.
_RELATED = sa.select(sa.literal(1)).where(
    relation_clause(sa.bindparam("parent"), sa.bindparam("child"), sa.bindparam("kind"))
)


_LEAN_RELATED = LeanStatement(_RELATED)


def is_related(conn: Connection, parent: str, child: str, kind: RelationKind) -> bool:
    params = {"parent": parent, "child": child, "kind": kind.value}
    return _LEAN_RELATED.first(conn, params) is not None


def children(conn: Connection, parent: str, kind: RelationKind | None = None) -> list[tuple[str, str]]:
    stmt = sa.select(merchant_relations.c.child_mchid, merchant_relations.c.kind).where(
        merchant_relations.c.parent_mchid == parent
    )
    if kind is not None:
        stmt = stmt.where(merchant_relations.c.kind == kind.value)
    return [(r[0], r[1]) for r in conn.execute(stmt.order_by(merchant_relations.c.child_mchid))]


def add_platform_key(conn: Connection, row: PlatformKeyRow) -> None:
    note_change(conn)  # every process's keyring reads the keys again (server/keyring.py: follow)
    conn.execute(platform_keys.insert().values(**_asdict(row)))


def _asdict(row: PlatformKeyRow) -> dict[str, object]:
    return {f: getattr(row, f) for f in PlatformKeyRow.__slots__}


def list_platform_keys(conn: Connection) -> list[PlatformKeyRow]:
    rows = conn.execute(sa.select(platform_keys).order_by(platform_keys.c.created_at))
    return [PlatformKeyRow(**dict(r._mapping)) for r in rows]


def unkeyed_merchant(conn: Connection, now: float) -> tuple[str, KeyMode] | None:
    """A merchant (and its mode) that no WeChat Pay key in force could answer in its mode, or None:
    a certificate merchant needs a valid platform certificate, a public-key merchant a public key of
    its own or a shared one, a migrating merchant either. Checked before a retirement commits (without
    its key the answers went out signed with the other kind, or unsigned)."""
    rows = list_platform_keys(conn)
    has_cert = bool(valid_certificates(rows, now))
    live = live_public_keys(rows)
    if any(r.mchid is None for r in live):
        return None if has_cert else _first_in(conn, [KeyMode.CERTIFICATE])
    need = [KeyMode.PUBLIC_KEY] if has_cert else [KeyMode.PUBLIC_KEY, KeyMode.MIGRATING]
    own = sorted({r.mchid for r in live if r.mchid is not None})
    found = _first_in(conn, need, without=own)
    return found if found is not None or has_cert else _first_in(conn, [KeyMode.CERTIFICATE])


def _first_in(
    conn: Connection, modes: list[KeyMode], without: list[str] | None = None
) -> tuple[str, KeyMode] | None:
    stmt = sa.select(merchants.c.mchid, merchants.c.key_mode).where(
        merchants.c.key_mode.in_([mode.value for mode in modes])
    )
    if without:
        stmt = stmt.where(merchants.c.mchid.not_in(without))
    row = conn.execute(stmt.order_by(merchants.c.mchid).limit(1)).first()
    return None if row is None else (row[0], KeyMode(row[1]))


def retire_platform_key(conn: Connection, key_id: str) -> bool:
    note_change(conn)
    stmt = platform_keys.update().where(platform_keys.c.key_id == key_id).values(retired=True)
    return conn.execute(stmt).rowcount > 0
