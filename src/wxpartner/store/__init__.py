"""Persistence: SQLAlchemy 2 Core over SQLite (embedded) or PostgreSQL (scale-out)."""

from .db import Database

__all__ = ["Database"]
