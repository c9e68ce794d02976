"""Every table of every family, registered on one MetaData (imported by migrations and tests)."""

from __future__ import annotations

from .schema import metadata

__all__ = ["metadata"]
