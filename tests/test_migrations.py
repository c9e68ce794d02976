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


def test_the_restart_shortcut_knows_the_heads_alembic_knows() -> None:
    """A restart skips migrating (and importing Alembic) when the database is at the heads read from
    the scripts' text (store/db.py: at_heads). Those must be Alembic's own heads: a script the text
    reading got wrong would skip an upgrade an old database needs, or migrate on every start."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from wxpartner.store.db import MIGRATIONS_DIR, _script_heads

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(cfg)
    assert _script_heads() == set(scripts.get_heads())
    # Every file is one revision, named by its number, and no two share one (two audits merged with a
    # "0012" each once: Alembic warns and keeps one of them).
    numbers = [p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py")]
    assert len(numbers) == len(set(numbers))
    assert {s.revision for s in scripts.walk_revisions()} == set(numbers)


def test_one_authorized_relation_per_user_is_a_partial_index(database_url: str) -> None:
    """The declaration names only SQLite's WHERE (naming PostgreSQL's imported its dialect into every
    process) and Alembic's comparison does not read either: the migrated index itself must be partial
    on both backends, or a user revoked once could never be authorized again."""
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'uq_webizpay_relations_authorized'"
                ).scalar_one()
            else:
                sql = conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_webizpay_relations_authorized'"
                ).scalar_one()
    finally:
        db.dispose()
    assert "UNIQUE" in sql.upper() and "WHERE" in sql.upper() and "AUTHORIZED" in sql, sql
