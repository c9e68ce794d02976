"""WeChat Pay's signing keys as this process holds them: parsed once, refreshed from the store.

A key is parsed the first time it is used and then kept (≈ 0.05 ms: stored keys skip the RSA
consistency check, which costs ≈ 40 ms and was made when the key entered the store);
the table is re-read every few seconds (or on a miss) so a rotation made by another process is seen.

A miss (a ``Wechatpay-Serial`` that names no key: a client pinned to a stale ID, or an attacker) reads
the table again only when the keys may have changed since they were last read: the change word
(store/change_signal.py) differs from the one read before that load. Adding or retiring a key rewrites
it (SQLite: the word shared by the host's processes; PostgreSQL: the generation each request reads with
its nonce, followed in ``follow``), so a key added by another process or host is found at once, and a
stream of unknown IDs costs no statement until the word moves. Where there is no word to follow (an
in-memory SQLite: this process's own count of committed changes) the same holds. Nothing is kept per
missing ID, so the memory of misses is bounded by construction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.exc import SQLAlchemyError

from ..domain.merchants import Caller, KeyMode, Merchant
from ..protocol import serials
from ..protocol.keys import load_private_key, load_public_key
from ..store.db import Database
from ..store.registry import (
    PlatformKeyRow,
    list_platform_keys,
    public_key_of,
    public_keys_of,
    valid_certificates,
)

REFRESH_SECONDS = 5.0
NOT_THIS_MERCHANTS = "not a WeChat Pay public-key ID or platform certificate serial of this merchant"
log = logging.getLogger("wxpartner.keys")


@dataclass
class PlatformKey:
    row: PlatformKeyRow
    _private: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    _public: rsa.RSAPublicKey | None = field(default=None, repr=False)

    @property
    def key_id(self) -> str:
        return self.row.key_id

    @property
    def is_certificate(self) -> bool:
        return self.row.kind == "certificate"

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        if self._private is None:
            # Every stored platform key was generated here or validated on its way in (scenario.py).
            self._private = load_private_key(self.row.private_key_pem.encode(), validated=True)
        return self._private

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        if self._public is None:
            self._public = load_public_key(self.row.public_key_pem.encode())
        return self._public


class KeyRing:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._keys: dict[str, PlatformKey] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._generation: str | None = None  # the change generation last followed (follow)
        # The change word read just before the keys were last loaded: while the word is still this,
        # a key_id not among them is not in the table either (get). None: unknown, a miss reads again.
        self._loaded_word: object | None = None
        self.forced_reloads = 0  # reads of the table made for a miss (tests count them)

    def refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return
        with self._lock:
            word = self._word()
            with self._db.read() as conn:
                rows = list_platform_keys(conn)
            fresh: dict[str, PlatformKey] = {}
            for row in rows:
                old = self._keys.get(row.key_id)
                if old is not None and old.row.private_key_pem == row.private_key_pem:
                    old.row = row  # keep the parsed key, take the new flags (retired)
                    fresh[row.key_id] = old
                else:
                    fresh[row.key_id] = PlatformKey(row)
            self._keys = fresh
            self._loaded_at = time.monotonic()
            self._loaded_word = word

    def _word(self) -> object | None:
        """The word that moves whenever a key is added or retired (see the module), or None."""
        signal = self._db.change_signal
        if signal is not None:
            return signal.current()
        if not self._db.sqlite:
            return self._generation  # PostgreSQL: the generation last followed; None before the first
        return ("local", self._db.local_changes)

    def follow(self, generation: str | None) -> None:
        """PostgreSQL: ``generation`` is the change generation a request read with its nonce
        (store/change_signal.py), which adding or retiring a platform key rewrites. When it differs from
        the one last followed, the keys are read again now: a rotation made through another host is
        used from that host's next request on, not up to REFRESH_SECONDS later."""
        if generation is None or generation == self._generation:
            return
        try:
            self.refresh(force=True)  # read after the generation: at least as new as it
        except SQLAlchemyError:  # the database went away since the request's own statement
            log.warning("platform keys not re-read (database error); the next request tries again")
            return  # the keys held so far sign; the generation stays unfollowed
        with self._lock:
            self._generation = generation
            self._loaded_word = generation  # read after the request read it: complete as of it

    def get(self, key_id: str) -> PlatformKey | None:
        self.refresh()
        key = self._keys.get(key_id)
        if key is None:
            word = self._word()
            if word is not None and word == self._loaded_word:
                return None  # no key was added since the table was read without it
            self.forced_reloads += 1
            self.refresh(force=True)
            key = self._keys.get(key_id)
        return key

    def all(self) -> list[PlatformKey]:
        self.refresh()
        return list(self._keys.values())

    def certificates(self, now: float | None = None) -> list[PlatformKey]:
        """Valid, non-retired platform certificates, newest first (several during a rotation)."""
        keys = {k.key_id: k for k in self.all()}
        rows = valid_certificates((k.row for k in keys.values()), time.time() if now is None else now)
        return [keys[r.key_id] for r in rows]

    def public_key_for(self, mchid: str) -> PlatformKey | None:
        """The merchant's own WeChat Pay public key, else the shared one."""
        keys = {k.key_id: k for k in self.all()}
        row = public_key_of((k.row for k in keys.values()), mchid)
        return None if row is None else keys[row.key_id]

    def public_keys_for(self, mchid: str) -> list[PlatformKey]:
        """The merchant's WeChat Pay public keys in force, newest first (several while its own key is
        being rotated: until the old one is retired)."""
        keys = {k.key_id: k for k in self.all()}
        return [keys[row.key_id] for row in public_keys_of((k.row for k in keys.values()), mchid)]

    def usable_by(self, merchant: Merchant, key_id: str) -> PlatformKey | None:
        """A key this merchant may name in Wechatpay-Serial (to encrypt fields / choose a signer)."""
        key = self.get(key_id)
        return key if key is not None and _refusal(merchant, key, time.time()) is None else None

    def refusal(self, merchant: Merchant, key_id: str) -> str | None:
        """Why ``key_id`` is not usable by this merchant in Wechatpay-Serial; None when it is."""
        now = time.time()
        key = self.get(key_id)
        if key is not None:
            return _refusal(merchant, key, now)
        usable = [k.key_id for k in self.all() if _refusal(merchant, k, now) is None]
        return NOT_THIS_MERCHANTS + serials.hint(key_id, usable)

    def signer_for(self, caller: Caller) -> PlatformKey:
        """Which key signs a response to this caller (spec §7, README "Key modes and rotation").

        A migrating or public-key merchant whose request names, in ``Wechatpay-Serial``, a key it may
        use is answered with that key: during a migration the named kind picks the signer, and during
        a rotation of the merchant's WeChat Pay public key a client that still holds the old one goes
        on verifying until the old key is retired (WeChat Pay "uses the private key of the public-key
        ID the merchant declares"). A certificate merchant is answered with the newest certificate."""
        merchant = caller.merchant
        if merchant.key_mode != KeyMode.CERTIFICATE and caller.wechatpay_serial:
            named = self.usable_by(merchant, caller.wechatpay_serial)
            if named is not None:
                return named
        if merchant.key_mode == KeyMode.PUBLIC_KEY:
            pub = self.public_key_for(merchant.mchid)
            if pub is not None:
                return pub
        certs = self.certificates()
        if certs:
            return certs[0]
        pub = self.public_key_for(merchant.mchid)
        if pub is None:
            raise RuntimeError("no platform key is registered: run the bootstrap")
        return pub

    def callback_signer_for(self, merchant: Merchant) -> PlatformKey:
        """A callback names no key, so during an overlap it goes out signed with any key in force, at
        random, and a receiver must accept each of them (spec §7): a migrating merchant's with its
        public key(s) or the newest platform certificate, a public-key merchant's with any of its own
        public keys while one is being rotated (until the old one is retired)."""
        if merchant.key_mode == KeyMode.MIGRATING:
            options = [*self.public_keys_for(merchant.mchid), *self.certificates()[:1]]
            if options:
                return random.choice(options)
        if merchant.key_mode == KeyMode.PUBLIC_KEY:
            pubs = self.public_keys_for(merchant.mchid)
            if pubs:
                return random.choice(pubs)
        certs = self.certificates()
        return certs[0] if certs else self.signer_for(Caller(merchant, "", None))


def _refusal(merchant: Merchant, key: PlatformKey, now: float) -> str | None:
    row = key.row
    if row.retired:
        return f"{row.key_id} has been retired; download the current keys (GET /v3/certificates)"
    if key.is_certificate:
        if merchant.key_mode == KeyMode.PUBLIC_KEY:
            return (
                f"{row.key_id} is a platform certificate, and this merchant is in public-key mode: "
                "name its WeChat Pay public-key ID (PUB_KEY_ID_...)"
            )
        if not row.not_before <= now < row.not_after:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.not_after))
            when = "expired at " + stamp if now >= row.not_after else "is not valid yet"
            return (
                f"platform certificate {row.key_id} {when}; download the current ones (GET /v3/certificates)"
            )
        return None
    if merchant.key_mode == KeyMode.CERTIFICATE:
        return (
            f"{row.key_id} is a WeChat Pay public key, and this merchant is in platform-certificate mode: "
            "name a platform certificate serial"
        )
    if row.mchid not in (None, merchant.mchid):
        return NOT_THIS_MERCHANTS
    return None
