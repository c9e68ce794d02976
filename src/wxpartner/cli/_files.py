"""Files the commands read and write: every failure is a one-line error naming the file and the reason
(exit status 1), never a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol import keys as k


def read_bytes(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None


def read_text(path: str | Path, what: str) -> str:
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def write_bytes(path: str | Path, data: bytes | Iterable[bytes], *, secret: bool = False) -> None:
    """Whole or not at all (a Ctrl-C leaves the old file or none, never half of one); OSError as is.
    ``data`` may come in chunks, written as they come."""
    from ..sandbox.material import write_file  # not at start-up: it brings the store along

    write_file(path, data, secret=secret)


def write_text(path: str | Path, text: str, what: str, *, secret: bool = False) -> None:
    try:
        write_bytes(path, text.encode("utf-8"), secret=secret)
    except OSError as exc:
        raise click.ClickException(f"{what} {path}: cannot write it: {exc.strerror or exc}") from None


def at_file(value: str, option: str) -> bytes:
    """An option's value, or with ``@FILE`` that file's exact bytes."""
    return read_bytes(value[1:], f"{option} @FILE") if value.startswith("@") else value.encode("utf-8")


def private_key(path: str | Path) -> rsa.RSAPrivateKey:
    try:
        return k.load_private_key(read_bytes(path, "private key"))
    except k.KeyLoadError as exc:
        raise click.ClickException(f"private key {path}: {exc}") from None


def public_key(pem: bytes, path: str | Path) -> rsa.RSAPublicKey:
    try:
        return k.load_public_key(pem)
    except k.KeyLoadError as exc:
        raise click.ClickException(f"public key {path}: {exc}") from None
