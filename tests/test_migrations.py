"""The migrations build exactly the schema the code declares (store/tables.py), on both backends:
queries are written against the declared tables, databases are made by the migrations."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wxpartner.store.db import Database
from wxpartner.store.tables import metadata


def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    db = Database(database_url)  # the test database: the template, made by the migrations
    try:
        with db.engine.connect() as conn:
            drift: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.dispose()
    assert drift == []
