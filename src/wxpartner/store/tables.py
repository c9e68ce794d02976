"""Every table of every family, registered on one MetaData (imported by migrations and tests)."""

from __future__ import annotations

from . import (
    apply4subject_tables,  # noqa: F401  (merchant applyment for subject)
    ops_tables,  # noqa: F401  (request journal, fault rules)
    outbox_tables,  # noqa: F401  (callback outbox)
    recharge_tables,  # noqa: F401  (scan-to-recharge employees)
    webizpay_merchants_tables,  # noqa: F401  (webizpay W9–W17: stores, bills, ranges)
    webizpay_tables,  # noqa: F401  (enterprise payment: relations, quota cards)
)
from .schema import metadata

__all__ = ["metadata"]
