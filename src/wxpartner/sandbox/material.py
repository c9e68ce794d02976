"""Generating key material for merchants and for WeChat Pay itself, written as the files integrators know."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol import keys as k
from ..store.registry import PlatformKeyRow

_ALNUM = string.ascii_letters + string.digits


def new_apiv3_key() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(32))


def new_public_key_id() -> str:
    return "PUB_KEY_ID_01" + "".join(secrets.choice(string.digits) for _ in range(26))


@dataclass(frozen=True)
class MerchantKeyFiles:
    serial_no: str
    private_key_path: Path
    certificate_path: Path
    private_key_pem: str = field(repr=False)
    certificate_pem: str
    public_key_pem: str


def write_file(path: Path | str, data: str | bytes | Iterable[bytes], *, secret: bool = False) -> None:
    """Whole or not at all: written to a temporary file beside ``path`` (created 0600 whatever the umask),
    then renamed over it. A Ctrl-C or a full disk mid-write, or a command reading connection.json while
    ``serve`` rewrites it, never meets an empty or half-written file (truncating in place did). Owner-only
    when ``secret``, else 0644. OSError as the system says it."""
    write_files([(Path(path), data, secret)])


def write_files(files: Sequence[tuple[Path, str | bytes | Iterable[bytes], bool]]) -> None:
    """``write_file`` for files that belong together (a key and its certificate): every one is written
    to its temporary first, then all are renamed with SIGINT and SIGTERM held back, so a Ctrl-C or a
    kill never leaves a new key beside the old certificate (with one rename per file it could)."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data, secret in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                if not secret:
                    os.fchmod(fd, 0o644)
                if isinstance(data, str | bytes):
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                else:  # chunks as they arrive (a streamed export): never all in memory
                    for chunk in data:
                        f.write(chunk)
        with _signals_held():
            for tmp, path in staged:
                os.replace(tmp, path)
    except BaseException:
        for tmp, _path in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have. Held by Python
    handlers, not a signal mask: the kernel hands a process's signal to any thread that does not block
    it, and Python runs the handler in the main thread whichever thread got it. Off the main thread
    there is nothing to hold (no handler runs there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    held = [sig for sig, handler in before.items() if handler is not None]  # None: set outside Python
    for sig in held:
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, before[sig])
        for signum in caught:
            signal.raise_signal(signum)


def write_secret(path: Path, text: str) -> None:
    """Owner-only from the first byte, whole or not at all (``write_file``); its directory made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, text, secret=True)


def merchant_key_dir(data_dir: Path, mchid: str) -> Path:
    """<data_dir>/keys/<mchid>, refused (ValueError) unless it is exactly one level under keys/: a
    merchant number that is a path ("/tmp/x", "../x") must not choose where key files are written."""
    root = (data_dir / "keys").resolve()
    path = (root / mchid).resolve()
    if path.parent != root or not mchid.isascii() or not mchid.isdigit():
        raise ValueError(f"{mchid!r} is not a merchant number: no key directory for it")
    return path


def new_merchant_keys(mchid: str, out_dir: Path, *, pkcs1: bool = False) -> MerchantKeyFiles:
    """A key pair and certificate for ``out_dir``, in memory: nothing is written yet (a scenario writes
    them only once its transaction committed, see ``write_merchant_keys``)."""
    key = k.generate_private_key()
    cert = k.issue_certificate(
        key, f"{mchid}", organization="wxpartner sandbox merchant", issuer_key=k.generate_private_key()
    )
    return MerchantKeyFiles(
        serial_no=k.certificate_serial(cert),
        private_key_path=out_dir / "apiclient_key.pem",
        certificate_path=out_dir / "apiclient_cert.pem",
        private_key_pem=k.private_key_pem(key, pkcs1=pkcs1),
        certificate_pem=k.certificate_pem(cert),
        public_key_pem=k.public_key_pem(key.public_key()),
    )


def write_merchant_keys(files: MerchantKeyFiles) -> None:
    """apiclient_key.pem (owner-only; its directory made) and apiclient_cert.pem beside it."""
    files.private_key_path.parent.mkdir(parents=True, exist_ok=True)
    write_files(
        [
            (files.private_key_path, files.private_key_pem, True),
            (files.certificate_path, files.certificate_pem, False),
        ]
    )


def make_merchant_keys(mchid: str, out_dir: Path, *, pkcs1: bool = False) -> MerchantKeyFiles:
    """apiclient_key.pem (PKCS#8, or PKCS#1 on request) and apiclient_cert.pem, as the merchant console issues."""
    files = new_merchant_keys(mchid, out_dir, pkcs1=pkcs1)
    write_merchant_keys(files)
    return files


# (key file, cert file) -> their (path, inode, size, mtime) and the certificate's serial when the private key
# belongs to it (None otherwise): a start reads the same pair up to 3 times per merchant (the keys
# check, connection.json's top level and its merchants entry), and loading a PEM private key costs tens
# of milliseconds each time. A file rewritten or replaced has another stat, and is read again.
_PAIR_SERIALS: dict[tuple[str, str], tuple[tuple[tuple[int, int, int], ...], str | None]] = {}
_PAIR_LOCK = threading.Lock()


def _pair_serial(key_path: Path, cert_path: Path) -> str | None:
    stats = tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in (key_path.stat(), cert_path.stat()))
    cache_key = (str(key_path.absolute()), str(cert_path.absolute()))
    with _PAIR_LOCK:
        known = _PAIR_SERIALS.get(cache_key)
    if known is not None and known[0] == stats:
        return known[1]
    try:
        cert = k.load_certificate(cert_path.read_bytes())
        private = k.load_private_key(key_path, validated=True)  # checked below, without primality tests
    except k.KeyLoadError:
        serial = None
    else:
        matches = private.public_key().public_numbers() == k.certificate_public_key(cert).public_numbers()
        serial = k.certificate_serial(cert) if matches and _numbers_consistent(private) else None
    with _PAIR_LOCK:
        _PAIR_SERIALS[cache_key] = (stats, serial)
    return serial


def _numbers_consistent(key: rsa.RSAPrivateKey) -> bool:
    """cryptography's RSA key check (OpenSSL's RSA_check_key) but for its primality tests of p and q,
    which are nearly all of its ≈ 40 ms: two demo keys checked by every start cost ≈ 80 ms of CPU. A
    key whose numbers were damaged fails these relations (p·q = n cannot survive a change of p or q)."""
    numbers = key.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    p, q, d = numbers.p, numbers.q, numbers.d
    return (
        1 < p < n
        and 1 < q < n
        and p * q == n
        and d * e % math.lcm(p - 1, q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and numbers.iqmp * q % p == 1
    )


def usable_key_files(out_dir: Path, registered: Callable[[str], bool]) -> str | None:
    """The serial of the pair already in ``out_dir`` when its private key belongs to its certificate and
    ``registered(serial)`` (the database: a certificate of this merchant, not revoked); else None."""
    key_path, cert_path = out_dir / "apiclient_key.pem", out_dir / "apiclient_cert.pem"
    if not (key_path.is_file() and cert_path.is_file()):
        return None
    try:
        serial = _pair_serial(key_path, cert_path)
    except OSError:
        return None
    if serial is None:
        return None
    return serial if registered(serial) else None


def make_platform_certificate(
    *, valid_days: int = 5 * 365, not_before: float | None = None
) -> PlatformKeyRow:
    key = k.generate_private_key()
    start = time.time() - 300 if not_before is None else not_before
    import datetime as dt

    cert = k.issue_certificate(
        key,
        "Tenpay.com sandbox platform certificate",
        organization="wxpartner sandbox (WeChat Pay)",
        valid_days=valid_days,
        not_before=dt.datetime.fromtimestamp(start, dt.UTC),
    )
    return PlatformKeyRow(
        key_id=k.certificate_serial(cert),
        kind="certificate",
        mchid=None,
        private_key_pem=k.private_key_pem(key),
        public_key_pem=k.public_key_pem(key.public_key()),
        certificate_pem=k.certificate_pem(cert),
        not_before=start,
        not_after=start + valid_days * 86400,
        retired=False,
        created_at=time.time(),
    )


def make_platform_public_key(mchid: str | None = None, key_id: str | None = None) -> PlatformKeyRow:
    key = k.generate_private_key()
    now = time.time()
    return PlatformKeyRow(
        key_id=key_id or new_public_key_id(),
        kind="public_key",
        mchid=mchid,
        private_key_pem=k.private_key_pem(key),
        public_key_pem=k.public_key_pem(key.public_key()),
        certificate_pem=None,
        not_before=now - 300,
        not_after=now + 100 * 365 * 86400,
        retired=False,
        created_at=now,
    )
