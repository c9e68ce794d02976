"""Declarative scenario files (YAML or JSON): merchants, keys and relations, plus one section per
product family. A scenario loads in one transaction: a file with an error loads nothing."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Connection

from ..domain.clock import is_business_time
from ..domain.merchants import KeyMode, Merchant, RelationKind, Role, notify_url_problem
from ..protocol import keys as k
from ..protocol.crypto import APIV3_KEY_RULE, is_apiv3_key
from ..protocol.detail import dotted, first_problem
from ..protocol.times import format_rfc3339, parse_rfc3339
from ..store import registry
from ..store.change_signal import note_change
from ..store.db import Database
from .material import (
    MerchantKeyFiles,
    merchant_key_dir,
    new_merchant_keys,
    usable_key_files,
    write_merchant_keys,
)


class ScenarioError(ValueError):
    """A scenario that cannot load; the message says which entry and why, as ``<where>: <reason>``:
    ``where`` is the entry's path in the scenario (``merchants[1].key_mode``, ``webizpay.cards[2]``,
    ``faults[0].mchid``), left out when no one entry is to blame (a text that is not YAML)."""

    _LOCATED = re.compile(r"([A-Za-z_][\w-]*(?:\[[^\]\s]*\]|\.[\w-]+)*): (.+)", re.DOTALL)

    def _parts(self) -> tuple[str | None, str]:
        m = self._LOCATED.fullmatch(str(self))
        return (m.group(1), m.group(2)) if m else (None, str(self))

    @property
    def where(self) -> str | None:
        return self._parts()[0]

    @property
    def reason(self) -> str:
        return self._parts()[1]


def entry_time(value: str | float | None, where: str, default: float) -> float:
    """An entry's time (RFC 3339, or Unix seconds) as business time, ``default`` when left out; a
    ScenarioError naming ``where`` otherwise. Between 1970 and 9999: every answer that shows it renders
    it as a date, and the auto policy compares it with the clock's now."""
    if value is None:
        return default
    try:
        ts = float(value) if isinstance(value, int | float) else parse_rfc3339(value).timestamp()
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if not is_business_time(ts):
        raise ScenarioError(f"{where}: must be between 1970 and 9999")
    return ts


def export_time(ts: float) -> str:
    """A stored time as an export writes it: to the millisecond (what loads back as the same text)."""
    return format_rfc3339(dt.datetime.fromtimestamp(ts, dt.UTC), millis=True)


# A time as an export writes it (RFC 3339, or Unix seconds); checked as business time by entry_time.
EntryTime = Annotated[str, Field(min_length=1, max_length=64)]
# Ids a request path carries unescaped (WeChat's own employee_ids are WeBizPay_<uuid>, card numbers
# and transaction ids digits): "a/b" was stored, and no W-path could name it.
PathId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-]+$")]

# A merchant number: digits, as long as the registry column (an oversized value is a ScenarioError, not
# a database error). Digits only, because a merchant number also names its key directory
# (<data-dir>/keys/<mchid>): "/tmp/x" or "../x" must never get that far. Every section that names a
# merchant uses this type.
MCHID_PATTERN = r"^[0-9]{1,32}$"
Mchid = Annotated[str, Field(min_length=1, max_length=32, pattern=MCHID_PATTERN)]


class CertificateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serial_no: str | None = Field(default=None, min_length=1, max_length=64)
    certificate: str | None = None  # PEM text or a path inside the scenario file's directory
    public_key: str | None = None  # PEM text or a path; needs serial_no
    generate: bool = False  # make a key pair and certificate under the data dir
    revoked: bool = False


class MerchantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mchid: Mchid
    name: str = Field(default="", max_length=128)
    role: Role = Role.SERVICE_PROVIDER
    key_mode: KeyMode = KeyMode.PUBLIC_KEY
    apiv3_key: str | None = Field(default=None, min_length=32, max_length=32, repr=False)
    notify_url: str | None = Field(default=None, max_length=512)
    certificates: list[CertificateSpec] = []
    sub_merchants: list[Mchid] = []
    second_level_merchants: list[Mchid] = []
    channel_merchants: list[Mchid] = []

    @field_validator("notify_url")
    @classmethod
    def _notify_url_is_a_url(cls, value: str | None) -> str | None:
        problem = notify_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key_is_ascii(cls, value: str | None) -> str | None:
        if value is not None and not is_apiv3_key(value):  # else every callback failed to encrypt
            raise ValueError(f"the APIv3 key must be {APIV3_KEY_RULE}")
        return value


class PlatformKeySpec(BaseModel):
    """WeChat Pay's own key, for setups that must keep the same platform keys across runs."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["public_key", "certificate"]
    # PUB_KEY_ID_...; else the certificate's serial. Letters, digits and '_' only: it names the key's
    # file in <data-dir>/platform (a '/' in it wrote elsewhere, or stopped every later start).
    key_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    private_key: str = Field(repr=False)  # PEM text or path
    certificate: str | None = None  # PEM text or path (certificate kind)
    mchid: Mchid | None = None  # a merchant's own public key; absent = shared
    retired: bool = False


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: Literal[1] = 1
    platform_keys: list[PlatformKeySpec] = []
    merchants: list[MerchantSpec] = []


@dataclass
class LoadContext:
    base_dir: Path
    data_dir: Path
    # PEM paths only inside base_dir: for scenarios that arrive over the network (the control API).
    # A file the user loads locally (serve --scenario, the pytest plugin) may name any file they can read.
    confine: bool = False
    report: dict[str, Any] = field(default_factory=dict)
    # Files to write once the transaction committed (generated keys): a failed load writes nothing.
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    generated: dict[Path, MerchantKeyFiles] = field(default_factory=dict)  # key dir -> pair to write


@dataclass(frozen=True)
class Section:
    """A family's part of a scenario file: how to load it and how to export it."""

    name: str
    load: Callable[[Connection, Any, LoadContext], None]
    export: Callable[[Connection], Any] | None = None


SECTIONS: dict[str, Section] = {}
# reset(conn, mchid or None): delete a family's business data (all, or one merchant's).
RESETTERS: list[Callable[[Connection, str | None], None]] = []


def register_section(section: Section) -> None:
    SECTIONS[section.name] = section


def parse_text(text: str) -> dict[str, Any]:
    import yaml  # here, not at import: ≈ 15 ms of a serve start that loads no scenario

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError("a scenario is a mapping with sections such as 'merchants'")
    return data


# A PEM file is a few KiB; anything far larger is not one (and is not read into memory).
MAX_PEM_FILE = 1 << 20


def _read_pem(value: str, lctx: LoadContext, where: str) -> str:
    """PEM text as given, or read from a file relative to ``lctx.base_dir`` (the scenario file's
    directory; the data directory for the control API). When confined, a path outside it is refused
    before anything is looked up, so the answer says nothing about files elsewhere; symlinks leading
    out are refused too."""
    if "-----BEGIN" in value:
        return value
    if k.looks_like_key_material(value):  # a key without its armor: not a path, and never echoed
        raise ScenarioError(
            f"{where}: neither PEM text (no '-----BEGIN' line) nor a path: {len(value)} characters that "
            "look like key material (not shown); give the whole PEM text or a file's path"
        )
    try:
        base = lctx.base_dir.resolve()
        path = Path(os.path.normpath(base / value))  # lexical first: nothing outside is looked up
        inside = path.is_relative_to(base) and path.resolve().is_relative_to(base)
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL in the path, a symlink loop
        raise ScenarioError(f"{where}: {value!r} is not a usable path") from exc
    if lctx.confine and not inside:
        raise ScenarioError(
            f"{where}: {value} is outside the scenario's directory; give PEM text or a path inside it"
        )
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PEM_FILE + 1)
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot read {value}: {exc.strerror}") from exc
    if len(data) > MAX_PEM_FILE:
        raise ScenarioError(f"{where}: {value} is larger than {MAX_PEM_FILE} bytes: not a PEM file")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ScenarioError(f"{where}: {value} is not PEM text") from None


def _check_owner(conn: Connection, serial: str, mchid: str, where: str) -> None:
    """A certificate belongs to one merchant; re-registering it elsewhere would silently move it."""
    owner = registry.serial_owner(conn, serial)
    if owner is not None and owner != mchid:
        raise ScenarioError(f"{where}: certificate {serial} is already registered to merchant {owner}")


def _merged(existing: Merchant | None, spec: MerchantSpec) -> Merchant:
    """The merchant an entry leaves: a new one with the entry's values (defaults where it leaves one
    out); one already registered keeps whatever the entry does not name (a reload of ``{mchid, key_mode}``
    reset its role to service_provider and dropped its APIv3 key and notify URL). A value the entry
    names, ``null`` included, is set."""
    given = spec.model_fields_set
    if existing is None:
        return Merchant(spec.mchid, spec.name, spec.role, spec.apiv3_key, spec.key_mode, spec.notify_url)
    return Merchant(
        spec.mchid,
        spec.name if "name" in given else existing.name,
        spec.role if "role" in given else existing.role,
        spec.apiv3_key if "apiv3_key" in given else existing.apiv3_key,
        spec.key_mode if "key_mode" in given else existing.key_mode,
        spec.notify_url if "notify_url" in given else existing.notify_url,
    )


def _load_merchant(conn: Connection, spec: MerchantSpec, lctx: LoadContext) -> None:
    registry.upsert_merchant(conn, _merged(registry.get_merchant(conn, spec.mchid), spec))
    made: list[dict[str, str]] = []
    for i, cert in enumerate(spec.certificates):
        where = f"merchants[{spec.mchid}].certificates[{i}]"
        if cert.generate:
            made.append(_generate(conn, spec.mchid, lctx, where))
            continue
        if cert.certificate:
            pem = _read_pem(cert.certificate, lctx, where)
            try:
                parsed = k.load_certificate(pem.encode())
            except k.KeyLoadError as exc:
                raise ScenarioError(f"{where}: {exc}") from exc
            serial = k.certificate_serial(parsed)
            if cert.serial_no and cert.serial_no.upper() != serial:
                raise ScenarioError(
                    f"{where}: serial_no {cert.serial_no} does not match the certificate ({serial})"
                )
            public = k.public_key_pem(k.certificate_public_key(parsed))
            _check_owner(conn, serial, spec.mchid, where)
            registry.add_certificate(conn, spec.mchid, serial, public, pem)
        elif cert.public_key:
            if not cert.serial_no:
                raise ScenarioError(f"{where}: a bare public_key needs its serial_no")
            pem = _read_pem(cert.public_key, lctx, where)
            try:
                k.load_public_key(pem.encode())
            except k.KeyLoadError as exc:
                raise ScenarioError(f"{where}: {exc}") from exc
            serial = cert.serial_no.upper()
            _check_owner(conn, serial, spec.mchid, where)
            registry.add_certificate(conn, spec.mchid, serial, pem, None)
        else:
            raise ScenarioError(f"{where}: give certificate, public_key + serial_no, or generate: true")
        if cert.revoked:
            registry.revoke_certificate(conn, serial)
    if made:
        lctx.report.setdefault("generated_keys", {})[spec.mchid] = made
    for children, kind, role in (
        (spec.sub_merchants, RelationKind.SUB_MERCHANT, Role.SUB_MERCHANT),
        (spec.second_level_merchants, RelationKind.SECOND_LEVEL, Role.SECOND_LEVEL),
        (spec.channel_merchants, RelationKind.CHANNEL, Role.CHANNEL),
    ):
        for child in children:
            if registry.get_merchant(conn, child) is None:
                registry.upsert_merchant(conn, Merchant(child, "", role, None, KeyMode.PUBLIC_KEY, None))
            registry.add_relation(conn, spec.mchid, child, kind)


def _generate(conn: Connection, mchid: str, lctx: LoadContext, where: str) -> dict[str, str]:
    """``generate: true``: the usable pair already in <data-dir>/keys/<mchid>/ (registered to this
    merchant, not revoked: loading a file twice changes nothing), else a new pair, registered now and
    written once the load committed (a load that fails leaves the files as they were)."""
    try:
        key_dir = merchant_key_dir(lctx.data_dir, mchid)  # Mchid already refuses paths
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc

    def registered(serial: str) -> bool:
        _, cred = registry.get_credential(conn, mchid, serial)
        return cred is not None and not cred.revoked

    files = lctx.generated.get(key_dir)  # a second generate: true of the merchant in this file
    serial = files.serial_no if files is not None else usable_key_files(key_dir, registered)
    if serial is None:
        files = lctx.generated[key_dir] = new_merchant_keys(mchid, key_dir)
        registry.add_certificate(conn, mchid, files.serial_no, files.public_key_pem, files.certificate_pem)
        lctx.after_commit.append(lambda: write_merchant_keys(files))
        serial = files.serial_no
    return {
        "serial_no": serial,
        "private_key": str(key_dir / "apiclient_key.pem"),
        "certificate": str(key_dir / "apiclient_cert.pem"),
    }


def _load_platform_key(conn: Connection, spec: PlatformKeySpec, lctx: LoadContext, where: str) -> None:
    import time

    from ..store.registry import PlatformKeyRow

    try:
        private = k.load_private_key(_read_pem(spec.private_key, lctx, where).encode())
    except k.KeyLoadError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    now = time.time()
    not_before, not_after = now - 300, now + 100 * 365 * 86400
    cert_pem: str | None = None
    if spec.kind == "certificate":
        if not spec.certificate:
            raise ScenarioError(f"{where}: a certificate key needs its certificate")
        cert_pem = _read_pem(spec.certificate, lctx, where)
        try:
            cert = k.load_certificate(cert_pem.encode())
        except k.KeyLoadError as exc:
            raise ScenarioError(f"{where}: {exc}") from exc
        key_id = k.certificate_serial(cert)
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
    else:
        if not spec.key_id or not spec.key_id.startswith("PUB_KEY_ID_"):
            raise ScenarioError(f"{where}: a public_key needs key_id PUB_KEY_ID_...")
        key_id = spec.key_id
    if any(r.key_id == key_id for r in registry.list_platform_keys(conn)):
        return
    registry.add_platform_key(
        conn,
        PlatformKeyRow(
            key_id=key_id,
            kind=spec.kind,
            mchid=spec.mchid,
            private_key_pem=k.private_key_pem(private),
            public_key_pem=k.public_key_pem(private.public_key()),
            certificate_pem=cert_pem,
            not_before=not_before,
            not_after=not_after,
            retired=spec.retired,
            created_at=now,
        ),
    )


def load_into(conn: Connection, data: dict[str, Any], lctx: LoadContext) -> dict[str, Any]:
    try:
        parsed = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(first_problem(exc)) from exc
    for i, pk in enumerate(parsed.platform_keys):
        _load_platform_key(conn, pk, lctx, f"platform_keys[{i}]")
    for spec in parsed.merchants:
        _load_merchant(conn, spec, lctx)
    if "merchants" in data:  # as every section: reported when the file has it (a file of faults said 0)
        lctx.report["merchants"] = len(parsed.merchants)
    extra = parsed.model_extra or {}
    unknown = [name for name in extra if name not in SECTIONS]
    if unknown:
        raise ScenarioError(
            f"unknown section(s): {', '.join(unknown)}; known: merchants, {', '.join(sorted(SECTIONS))}"
        )
    for name, section in SECTIONS.items():  # registration order: families that depend on others come later
        if name in extra and extra[name] is not None:
            section.load(conn, extra[name], lctx)
    return lctx.report


NUL_REASON = "must not contain NUL characters"


def nul_path(data: dict[str, Any]) -> str | None:
    """The path, in the form of every other scenario error (``merchants[0].mchid``), of the first
    string or key in ``data`` that holds a NUL; None when none does. The value is not echoed: nothing
    says whether it is a secret."""
    from ..server.validation import first_text  # (the store's and the server's; imported when loading)

    found = first_text(data, lambda text: "NUL" if "\x00" in text else None)
    if found is None:
        return None
    return dotted(tuple(p.replace("\x00", "\\u0000") if isinstance(p, str) else p for p in found[0]))


def refuse_nul(data: dict[str, Any]) -> None:
    """A ScenarioError naming the first NUL (``nul_path``): no column can hold one on PostgreSQL, and a
    NUL in a path would reach the file system. The control API answers it before, as 400 PARAM_ERROR
    (as a NUL anywhere in its input), with the same path."""
    where = nul_path(data)
    if where is not None:
        raise ScenarioError(f"{where}: {NUL_REASON}")


def load_scenario(
    db: Database, data: dict[str, Any], *, base_dir: Path, data_dir: Path, confine: bool = False
) -> dict[str, Any]:
    """``confine``: PEM paths only inside ``base_dir`` (a scenario that came over the network)."""
    from ..server import families  # noqa: F401  (registers the family sections)

    refuse_nul(data)
    lctx = LoadContext(base_dir, data_dir, confine=confine)
    with db.write() as conn:
        # A load looks before it inserts (platform keys, certificates' owners, relations): loads through
        # several processes or hosts at once run one after the other, each seeing the one before it.
        # Marking the change first does it (on PostgreSQL the change generation's row stays locked until
        # commit; SQLite writers are serialised anyway).
        note_change(conn)
        report = load_into(conn, data, lctx)
    for write in lctx.after_commit:
        write()
    return report


def load_scenario_file(db: Database, path: Path, *, data_dir: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"scenario {path} is not UTF-8 text (byte {exc.start})") from None
    return load_scenario(db, parse_text(text), base_dir=path.parent, data_dir=data_dir)


# Rows a family's export fetches from the database at a time (``yield_per``), and the rows of one
# chunk of the streamed answer: what a big sandbox's export holds in memory at once.
EXPORT_BATCH = 1000
_CHUNK_BYTES = 64 * 1024  # and a chunk is sent once this long, whatever the rows


@dataclass(frozen=True)
class Rows:
    """A list in an export that is written as its rows are read (``rows`` is lazy: a query run with
    ``yield_per(EXPORT_BATCH)`` in the export's transaction), so 100,000 applyments never sit in
    memory at once. A section returns one only when it has rows (a section is left out when empty,
    and so is a key whose list would be empty). ``nested``: its items hold ``Rows`` themselves."""

    rows: Iterable[Any]
    nested: bool = False


def export_value(conn: Connection) -> dict[str, Any]:
    """The export, its big lists as ``Rows`` still to be read: consumed (``export_scenario``,
    ``export_json``) inside the transaction of ``conn``."""
    from ..server import families  # noqa: F401

    out: dict[str, Any] = {"version": 1, "merchants": []}
    for m in registry.list_merchants(conn):
        entry: dict[str, Any] = {
            "mchid": m.mchid,
            "name": m.name,
            "role": m.role.value,
            "key_mode": m.key_mode.value,
        }
        if m.apiv3_key:
            entry["apiv3_key"] = m.apiv3_key
        if m.notify_url:
            entry["notify_url"] = m.notify_url
        certs = []
        for c in registry.list_certificates(conn, m.mchid):
            spec: dict[str, Any] = (
                {"certificate": c["certificate_pem"]}
                if c["certificate_pem"]
                else {"serial_no": c["serial_no"], "public_key": c["public_key_pem"]}
            )
            if c["revoked"]:
                spec["revoked"] = True
            certs.append(spec)
        if certs:
            entry["certificates"] = certs
        for kind, key in (
            (RelationKind.SUB_MERCHANT, "sub_merchants"),
            (RelationKind.SECOND_LEVEL, "second_level_merchants"),
            (RelationKind.CHANNEL, "channel_merchants"),
        ):
            kids = [child for child, _ in registry.children(conn, m.mchid, kind)]
            if kids:
                entry[key] = kids
        out["merchants"].append(entry)
    for name, section in SECTIONS.items():
        if section.export is not None:
            value = section.export(conn)
            if value:
                out[name] = value
    return out


def materialized(value: Any) -> Any:
    """``value`` with every ``Rows`` read into a list."""
    if isinstance(value, Rows):
        return [materialized(v) for v in value.rows]
    if isinstance(value, dict):
        return {k: materialized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialized(v) for v in value]
    return value


def export_scenario(db: Database) -> dict[str, Any]:
    """The current state as a scenario (in memory: for tests and small worlds; the control API
    streams it with ``export_json``)."""
    with db.snapshot() as conn:
        return cast(dict[str, Any], materialized(export_value(conn)))


# exactly what starlette's JSONResponse wrote for the whole export before it was streamed
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _lazy(value: Any) -> bool:
    if isinstance(value, Rows):
        return True
    if isinstance(value, dict):
        return any(_lazy(v) for v in value.values())
    if isinstance(value, list):
        return any(_lazy(v) for v in value)
    return False


def _pieces(value: Any, rows: list[int]) -> Iterator[str | None]:
    """The JSON text of ``value`` in pieces; None after every EXPORT_BATCH rows (the items of a
    ``Rows`` that is not nested), counted in ``rows[0]`` across lists: a place to send what has been
    written."""
    if not _lazy(value):
        yield _ENCODER.encode(value)
    elif isinstance(value, Rows) and value.nested:
        yield "["
        for i, item in enumerate(value.rows):
            yield from ([","] if i else [])
            yield from _pieces(item, rows)
        yield "]"
    elif isinstance(value, Rows):
        # a batch of rows encoded at once: "[a,b]" is "[" + "a" + "," + "b" + "]", as one list's text
        yield "["
        items = iter(value.rows)
        sep = ""
        while batch := list(itertools.islice(items, EXPORT_BATCH - rows[0])):
            yield sep + _ENCODER.encode(batch)[1:-1]
            sep = ","
            rows[0] += len(batch)
            if rows[0] >= EXPORT_BATCH:
                rows[0] = 0
                yield None
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + _ENCODER.encode(key) + ":"
            yield from _pieces(item, rows)
        yield "}"
    else:
        yield "["
        for i, item in enumerate(value):
            yield from ([","] if i else [])
            yield from _pieces(item, rows)
        yield "]"


def export_json(db: Database) -> Generator[bytes, None, None]:
    """The export as UTF-8 JSON, byte for byte what ``json.dumps(export_scenario(db))`` (the answer
    before it was streamed) is, in chunks: one per EXPORT_BATCH rows of a big list (or 64 KiB), each
    sent before the next rows are read. One read transaction (``Database.snapshot``) for all of it,
    so the export is consistent; it stays open until the last chunk is taken."""
    with db.snapshot() as conn:
        buf: list[str] = []
        size = 0
        for piece in _pieces(export_value(conn), [0]):
            if piece is not None:
                buf.append(piece)
                size += len(piece)
            if buf and (piece is None or size >= _CHUNK_BYTES):
                yield "".join(buf).encode("utf-8")
                buf, size = [], 0
        if buf:
            yield "".join(buf).encode("utf-8")


def reset(db: Database, mchid: str | None = None) -> bool:
    """Delete business data (every family's), keeping merchants and keys; all, or one merchant's.
    False, with nothing deleted, when ``mchid`` is not a registered merchant (a typo reset nothing and
    looked as if it had)."""
    with db.write() as conn:
        if mchid is not None and registry.get_merchant(conn, mchid) is None:
            return False
        reset_in(conn, mchid)
    if db.replay_window is not None:
        db.replay_window.forget(mchid)
    return True


def reset_in(conn: Connection, mchid: str | None) -> None:
    """``reset``'s deletes in the caller's write transaction (the pytest plugin's reset writes the rest
    of its work in the same one); the caller then makes the database's replay window forget ``mchid``."""
    from ..server import families  # noqa: F401
    from ..store import sandbox

    for resetter in RESETTERS:
        resetter(conn, mchid)
    sandbox.forget_requests(conn, mchid)
