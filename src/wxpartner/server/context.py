"""What a handler sees of a request: the verified caller, business time, transactions, decryption."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from ..domain.clock import ClockState
from ..domain.merchants import Caller
from ..protocol.crypto import DecryptionError, oaep_decrypt
from ..protocol.errors import ApiError, param_error
from .http import RawRequest

if TYPE_CHECKING:
    from .app import AppState
    from .operations import Operation


@dataclass
class Ctx:
    state: AppState
    caller: Caller
    clock: ClockState
    request: RawRequest
    request_id: str
    operation: Operation

    @property
    def mchid(self) -> str:
        return self.caller.mchid

    @property
    def now(self) -> dt.datetime:
        """Business time (movable by the sandbox clock)."""
        return self.clock.now()

    @property
    def now_ts(self) -> float:
        """Business time as epoch seconds (what the store keeps)."""
        return self.clock.now_ts()

    def write(self) -> contextlib.AbstractContextManager[Connection]:
        return self.state.db.write()

    def read(self) -> contextlib.AbstractContextManager[Connection]:
        return self.state.db.read()

    def autocommit(self) -> contextlib.AbstractContextManager[Connection]:
        """Statements that each commit alone (PostgreSQL); one write transaction on SQLite."""
        return self.state.db.autocommit()

    def one_statement(self) -> contextlib.AbstractContextManager[Connection] | None:
        """PostgreSQL: a connection for a write made by one statement (a CTE may change several
        tables), committed by itself: no BEGIN and COMMIT round trips. None on SQLite, which runs no DML
        in a CTE: the caller writes in a transaction (``write``)."""
        return None if self.state.db.sqlite else self.state.db.autocommit()

    def decrypt(self, ciphertext: str, field: str) -> str:
        """Decrypt an RSA-OAEP sensitive field with the WeChat Pay key named in Wechatpay-Serial."""
        serial = self.caller.wechatpay_serial or ""
        key = self.state.keyring.usable_by(self.caller.merchant, serial)
        if key is None:  # checked before the handler runs; kept for direct callers
            raise ApiError(
                "PARAM_ERROR",
                "Wechatpay-Serial无效",
                detail={"field": "Wechatpay-Serial", "location": "header"},
            )
        try:
            return oaep_decrypt(key.private_key, ciphertext)
        except DecryptionError:
            raise param_error(
                field,
                f"cannot be decrypted with the WeChat Pay key {serial}: encrypt it with RSA-OAEP (SHA-1) "
                "under the public key named in Wechatpay-Serial",
                message=f"参数“{field}”解密失败 (sensitive field does not decrypt)",
            ) from None
