"""Request verification in the spec's order (protocol.md §4.1), with precise, explainable refusals.

1. Accept / User-Agent / Content-Type -> 400 INVALID_REQUEST
2. Authorization present and well-formed -> 401 SIGN_ERROR
3. mchid known, serial_no registered to it and not revoked -> 401 SIGN_ERROR
4. timestamp within ±window of real time -> 401 SIGN_ERROR
5. nonce not seen inside the window -> 401 SIGN_ERROR
6. signature over the exact bytes received -> 401 SIGN_ERROR

The nonce is only recorded once the signature is valid (so forged requests cannot burn nonces),
but a replay is still reported before a mismatch, as the order above says.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ..domain.clock import ClockState
from ..domain.merchants import Caller, Merchant
from ..protocol import constants as c
from ..protocol import serials
from ..protocol.authorization import Authorization, AuthorizationFormatError, parse_authorization
from ..protocol.detail import shown_value
from ..protocol.errors import ApiError
from ..protocol.keys import load_public_key
from ..protocol.messages import canonical_url, request_message
from ..protocol.signing import verify
from ..store import registry, sandbox
from ..store.change_signal import GENERATION_KEY
from ..store.db import Database
from ..store.replay_window import ReplayWindow, ReplayWindowFull
from .credential_cache import CredentialCache, Lookup, Registered, RegisteredMemory
from .http import RawRequest

_JSON_RANGES = {"application/json", "*/*", "application/*"}
# PostgreSQL: every host records nonces and prunes the shared table by its own clock. A nonce is kept
# this much longer than the window needs, so that a host whose clock runs up to this far ahead never
# prunes one that a host whose clock runs behind still accepts a replay of (README: Request
# verification). Keeping it longer refuses nothing more: its timestamp is out of the window by then.
CLOCK_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class Verified:
    caller: Caller
    clock: ClockState
    # PostgreSQL: the change generation read with the nonce (store/change_signal.py), for what else a
    # process keeps in memory (server/keyring.py); None where there is none.
    generation: str | None = None


class _PublicKeyCache:
    """Parsed merchant public keys by PEM text (immutable, so safe to keep)."""

    def __init__(self, size: int = 1024) -> None:
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, pem: str) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._keys.get(pem)
            if key is not None:
                self._keys.move_to_end(pem)
                return key
        key = load_public_key(pem.encode())
        with self._lock:
            self._keys[pem] = key
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key


class _UnknownSerial(ApiError):
    """serial_no names no certificate of the merchant; verify() may add which one it meant."""

    registered: tuple[str, ...] | None = None  # the merchant's serials, when already known


def _unknown_mchid(auth: Authorization) -> ApiError:
    # Echoed cut (protocol/detail.py): the header may carry 32 KiB of it.
    shown = shown_value(None, auth.mchid)
    return _sign_error(f"unknown mchid {shown!r}", "商户号不存在或未注册", field="mchid")


def _unknown_serial(auth: Authorization, registered: tuple[str, ...] | None = None) -> _UnknownSerial:
    exc = _sign_error(
        f"serial_no {shown_value(None, auth.serial_no)!r} is not a certificate registered to mchid "
        f"{auth.mchid}",
        "商户证书序列号有误",
        field="serial_no",
        error=_UnknownSerial,
    )
    assert isinstance(exc, _UnknownSerial)
    exc.registered = registered
    return exc


def _unregistered(auth: Authorization, unknown: str, known: Registered | None) -> ApiError:
    """The step-3 refusal of a request naming an unknown merchant (``unknown`` "mchid") or serial."""
    if unknown == "mchid":
        return _unknown_mchid(auth)
    return _unknown_serial(auth, None if known is None else known.serials.get(auth.mchid, ()))


def _sign_error(
    issue: str,
    message: str,
    *,
    field: str = "signature",
    extra: dict[str, Any] | None = None,
    error: type[ApiError] = ApiError,
) -> ApiError:
    detail: dict[str, Any] = {"field": field, "location": "authorization", "detail": {"issue": issue}}
    if extra:
        detail.update(extra)
    return error("SIGN_ERROR", message, detail=detail)


def _invalid_header(name: str, issue: str) -> ApiError:
    return ApiError(
        "INVALID_REQUEST",
        f"Http头{name}缺失或无效：{issue}",
        detail={"field": name, "location": "header", "issue": issue},
    )


def accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _JSON_RANGES:
            return True
    return False


class Verifier:
    def __init__(
        self, db: Database, *, time_window: int = 300, explain: bool = True, prune_every: int = 2000
    ) -> None:
        self.db = db
        self.time_window = time_window
        self.explain = explain
        self._keys = _PublicKeyCache()
        self._prune_every = prune_every
        self._since_prune = 0
        signal = db.change_signal
        self._credentials = CredentialCache(signal) if signal is not None else None
        # PostgreSQL: lookups remembered too, checked by the nonce's statement (_check_on_postgres).
        self._remembered = CredentialCache() if not db.sqlite else None
        # Unknown merchants and serials, answered without a lookup each (server/credential_cache.py).
        self._registered = RegisteredMemory()
        # From when the replay history is complete for this process's window (learn_history).
        self._complete_from: int | None = None

    def check_headers(self, req: RawRequest) -> None:
        accept = req.header("accept")
        if not accept:
            raise _invalid_header("Accept", "Http头缺少Accept或User-Agent (missing Accept header)")
        if not accepts_json(accept):
            raise _invalid_header("Accept", f"Accept must admit application/json, got {accept[:80]!r}")
        if not (req.header("user-agent") or "").strip():
            raise _invalid_header("User-Agent", "Http头缺少Accept或User-Agent (missing User-Agent header)")
        if req.body:
            ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                raise _invalid_header(
                    "Content-Type",
                    f"a JSON body needs Content-Type: application/json, got {shown_value(None, ctype)!r}",
                )

    def verify(self, req: RawRequest) -> Verified:
        self.check_headers(req)
        header = req.header("authorization")
        if header is None:
            raise _sign_error(
                "missing Authorization header", "Http头Authorization缺失", field="Authorization"
            )
        if "authorization" in req.duplicate_headers:
            raise _sign_error(
                "Authorization header sent more than once", "Http头Authorization重复", field="Authorization"
            )
        try:
            auth = parse_authorization(header)
        except AuthorizationFormatError as exc:
            raise _sign_error(
                str(exc),
                "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
                field="Authorization",
            ) from None

        if self._complete_from is None:
            self.learn_history()
        try:
            merchant, clock, fresh, generation = self._checked(req, auth)
        except _UnknownSerial as exc:
            raise self._with_serial_hint(exc, auth) from None
        if not fresh:
            raise self._replay(auth.nonce_str)
        wechatpay_serial = req.header(c.H_WECHATPAY_SERIAL)
        return Verified(Caller(merchant, auth.serial_no, wechatpay_serial), clock, generation)

    def _checked(self, req: RawRequest, auth: Authorization) -> tuple[Merchant, ClockState, bool, str | None]:
        window = self.db.replay_window
        generation: str | None = None
        if window is not None:
            # SQLite: the window is shared memory on this host (store/replay_window.py), and the lookups
            # are remembered until the database says they changed (server/credential_cache.py).
            merchant, clock, fresh = self._check(
                req, auth, self._cached_lookup(auth), _SharedLedger(window, self.time_window)
            )
        elif self._remembered is not None:
            merchant, clock, fresh, generation = self._check_on_postgres(req, auth, self._remembered)
        else:
            # An in-memory SQLite: the lookup and the nonce's INSERT in one write transaction; the nonce
            # is written last, once every check passed (so a refusal writes nothing).
            with self.db.autocommit() as conn:
                found = registry.get_credential_and_clock(conn, auth.mchid, auth.serial_no)
                ledger = _TableLedger(conn, self.prune_due, 2 * self.time_window)
                merchant, clock, fresh = self._check(req, auth, found, ledger)
        return merchant, clock, fresh, generation

    def learn_history(self) -> None:
        """Servers of one database may verify with different windows (a restart with a wider
        ``--time-window``, hosts configured apart): every one keeps nonces for the longest retention any
        asked for, so none prunes a nonce another still accepts a replay of. A server widening it learns
        from when the history is complete for its window (store/replay_window.py: widen); requests
        signed before then are refused in _check. Once per process: as it starts, or (a database not
        migrated yet then) before its first check."""
        keep, now = 2 * self.time_window, time.time()
        window = self.db.replay_window
        if window is not None:
            self._complete_from = window.widen(keep, now)
            return
        with self.db.write() as conn:
            self._complete_from = sandbox.widen_replay_history(conn, keep, now)

    def _with_serial_hint(self, exc: _UnknownSerial, auth: Authorization) -> ApiError:
        """Outside any transaction: when serial_no spells one of the merchant's serials another way
        (decimal, lower case, OpenSSL's form), the refusal says which (sandbox mode only)."""
        if not self.explain:
            return exc
        if exc.registered is not None:
            registered = list(exc.registered)
        else:
            try:
                with self.db.read() as conn:
                    registered = [str(r["serial_no"]) for r in registry.list_certificates(conn, auth.mchid)]
            except SQLAlchemyError:  # the refusal stands without its hint
                return exc
        extra = serials.hint(auth.serial_no, registered)
        if extra and exc.detail is not None:
            exc.detail["detail"]["issue"] += extra
        return exc

    def _check_on_postgres(
        self, req: RawRequest, auth: Authorization, cache: CredentialCache
    ) -> tuple[Merchant, ClockState, bool, str | None]:
        """The request_nonces table, in autocommit (each statement atomic on its own): usually ONE
        statement. A remembered lookup is checked against the change generation that the nonce's
        INSERT reads in the same statement; if the generation moved since the lookup, or the remembered
        facts refused the request, the lookup is made again and the checks run again on fresh facts,
        and a nonce recorded on stale ones is taken back if those refuse (a refusal writes nothing)."""
        with self.db.autocommit() as conn:
            ledger = _GenerationLedger(conn, self.prune_due, 2 * self.time_window)
            remembered = cache.remembered(auth.mchid, auth.serial_no)
            if remembered is not None:
                try:
                    checked = self._check(req, auth, remembered[0], ledger)
                except ApiError:
                    pass  # refused on remembered facts: decided on fresh ones below
                else:
                    if ledger.generation == remembered[1]:
                        return (*checked, ledger.generation)
            else:
                self._refuse_if_unregistered_on_postgres(conn, auth)
            found, generation = registry.get_credential_clock_generation(conn, auth.mchid, auth.serial_no)
            cache.remember(auth.mchid, auth.serial_no, found, generation)
            if ledger.recorded is None and (found[0] is None or found[1] is None):
                # Refused at step 3 on these fresh facts (with no nonce recorded on remembered ones to
                # take back, below); the registry read for the next requests like it.
                raise _unregistered(
                    auth, "mchid" if found[0] is None else "serial_no", self._registered.read(conn)
                )
            if ledger.recorded is None:
                return (*self._check(req, auth, found, ledger), ledger.generation)
            try:
                return (*self._check(req, auth, found, _Recorded(ledger.recorded)), generation)
            except ApiError:
                if ledger.recorded:
                    sandbox.forget_nonce(conn, auth.mchid, auth.nonce_str)
                raise

    def _refuse_if_unregistered_on_postgres(self, conn: Connection, auth: Authorization) -> None:
        """A request naming a merchant or serial that the registry last read does not hold is refused on
        it if the change generation is still the one it was read at: one statement (the generation's),
        where the lookup took two (the lookup and, refused, the clock's or the serials' for the hint)."""
        known = self._registered.latest()
        if known is None:
            return
        unknown = known.unknown(auth.mchid, auth.serial_no)
        if unknown is not None and sandbox.kv_get(conn, GENERATION_KEY) == known.word:
            raise _unregistered(auth, unknown, known)

    def _cached_lookup(self, auth: Authorization) -> Lookup:
        """SQLite: the remembered lookup while the change word stands; else, a request naming a merchant
        or serial that the registry read at this word does not hold is refused without a lookup."""
        cache = self._credentials
        assert cache is not None  # built with the replay window: both need a SQLite file
        found = cache.get(auth.mchid, auth.serial_no)
        if found is not None:
            return found
        word = cache.word()  # before the reads: a read that raced a change is kept under the old word
        known = self._registered.at(word)
        if known is not None and (unknown := known.unknown(auth.mchid, auth.serial_no)) is not None:
            raise _unregistered(auth, unknown, known)
        with self.db.read() as conn:
            found = registry.get_credential_and_clock(conn, auth.mchid, auth.serial_no)
            if found[0] is None or found[1] is None:
                # Refused at step 3; the registry, read in the same transaction, for the next ones.
                unknown = "mchid" if found[0] is None else "serial_no"
                raise _unregistered(auth, unknown, self._registered.read(conn, word))
        cache.remember(auth.mchid, auth.serial_no, found, word)
        return found

    def _check(
        self, req: RawRequest, auth: Authorization, found: Lookup, ledger: _Ledger
    ) -> tuple[Merchant, ClockState, bool]:
        """Steps 3-6; the nonce is recorded last, once the signature is known to be good."""
        merchant, cred, clock = found
        if merchant is None:
            raise _unknown_mchid(auth)
        if cred is None:
            raise _unknown_serial(auth)
        if cred.revoked:
            raise _sign_error(
                f"certificate {auth.serial_no} has been revoked", "商户证书已作废", field="serial_no"
            )

        now = time.time()
        skew = int(auth.timestamp) - now
        if abs(skew) > self.time_window:
            direction = "ahead of" if skew > 0 else "behind"
            raise _sign_error(
                f"timestamp {auth.timestamp} is {abs(skew):.0f}s {direction} server time {int(now)} "
                f"(allowed ±{self.time_window}s)",
                "请求时间戳已过期或无效",
                field="timestamp",
            )
        complete_from = self._complete_from or 0
        if int(auth.timestamp) < complete_from:
            raise _sign_error(
                f"timestamp {auth.timestamp} is before {complete_from}, since when this server can tell a "
                f"replay: it verifies with a wider window (±{self.time_window}s) than this database's "
                "servers did before, and a nonce they accepted earlier may be forgotten",
                "请求时间戳已过期或无效",
                field="timestamp",
            )

        url = req.target()
        message = request_message(req.method, url, auth.timestamp, auth.nonce_str, req.body)
        key = self._keys.get(cred.public_key_pem)
        if not verify(key, message, auth.signature) and not _signed_without_bare_query(req, auth, key):
            if ledger.seen(auth.mchid, auth.nonce_str, now):
                raise self._replay(auth.nonce_str)
            raise _sign_error(
                "sign not match", "错误的签名，验签失败", extra=self._explain(req.method, url, message)
            )
        return merchant, clock, ledger.record(auth.mchid, auth.nonce_str, now)

    def prune_due(self) -> bool:
        """Every so many recorded nonces, the table drops the expired ones."""
        self._since_prune += 1
        if self._since_prune < self._prune_every:
            return False
        self._since_prune = 0
        return True

    def _replay(self, nonce: str) -> ApiError:
        return _sign_error(
            # remembered 2 x the window: a timestamp up to a window ahead stays acceptable that long
            f"nonce_str {nonce!r} was already used within the last {2 * self.time_window}s (replayed request)",
            "请求重放，nonce_str已使用",
            field="nonce_str",
        )

    def _explain(self, method: str, url: str, message: bytes) -> dict[str, Any] | None:
        if not self.explain:
            return None
        text = message.decode("utf-8", errors="replace")
        return {
            "sign_information": {
                "method": method,
                "url": url,
                "sign_message_length": len(message),
                "truncated_sign_message": text[:2048],
            }
        }


def _signed_without_bare_query(req: RawRequest, auth: Authorization, key: rsa.RSAPublicKey) -> bool:
    """A target received as "/v3/x?" also verifies when signed as "/v3/x": a client library may drop
    the bare '?' from what it signs but not from what it sends (README: Request verification)."""
    if not req.bare_query:
        return False
    url = canonical_url(req.raw_path, req.raw_query)
    return verify(
        key, request_message(req.method, url, auth.timestamp, auth.nonce_str, req.body), auth.signature
    )


class _Ledger(Protocol):
    """Where the replay window is kept: a nonce is remembered for 2 × the time window, the longest
    a request with an acceptable timestamp can be replayed after it was first seen."""

    def seen(self, mchid: str, nonce: str, now: float) -> bool: ...

    def record(self, mchid: str, nonce: str, now: float) -> bool: ...


class _TableLedger:
    """request_nonces, on the verification's connection (PostgreSQL in autocommit; an in-memory
    SQLite in one write transaction)."""

    def __init__(self, conn: Connection, prune_due: Callable[[], bool], keep: int) -> None:
        self._conn, self._prune_due, self._keep = conn, prune_due, keep

    def seen(self, mchid: str, nonce: str, now: float) -> bool:
        return sandbox.nonce_seen(self._conn, mchid, nonce)

    def record(self, mchid: str, nonce: str, now: float) -> bool:
        return self._pruned(sandbox.record_nonce(self._conn, mchid, nonce, now), now)

    def _pruned(self, fresh: bool, now: float) -> bool:
        if fresh and self._prune_due():
            sandbox.prune_nonces(self._conn, now - CLOCK_MARGIN_S, self._keep)
        return fresh


class _GenerationLedger(_TableLedger):
    """PostgreSQL: recording the nonce also reads the change generation (store/change_signal.py)."""

    recorded: bool | None = None  # None: not recorded (yet)
    generation: str | None = None

    def record(self, mchid: str, nonce: str, now: float) -> bool:
        fresh, self.generation = sandbox.record_nonce_reading_generation(self._conn, mchid, nonce, now)
        self.recorded = fresh
        return self._pruned(fresh, now)


class _Recorded:
    """The nonce is already recorded, ``fresh`` or found there before: checks run again on fresh facts
    without touching it."""

    def __init__(self, fresh: bool) -> None:
        self._fresh = fresh

    def seen(self, mchid: str, nonce: str, now: float) -> bool:
        return not self._fresh

    def record(self, mchid: str, nonce: str, now: float) -> bool:
        return self._fresh


class _SharedLedger:
    """The host's shared-memory window (SQLite on a file)."""

    def __init__(self, window: ReplayWindow, time_window: int) -> None:
        self._window, self._keep = window, 2 * time_window

    def seen(self, mchid: str, nonce: str, now: float) -> bool:
        return self._window.seen(mchid, nonce, now - self._keep)

    def record(self, mchid: str, nonce: str, now: float) -> bool:
        try:
            return self._window.record(mchid, nonce, now, now - self._keep)
        except ReplayWindowFull as exc:  # beyond any rate one host serves; refused, never a 500
            raise ApiError(
                "FREQUENCY_LIMITED",
                "频率限制，请降低频率后重试 (the replay window of this server is full)",
                detail={"issue": str(exc)},
            ) from None
