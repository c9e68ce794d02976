"""Sandbox operations tables: the request journal (migrations 0007, 0011) and fault-injection rules
(0007)."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata


def _journal_generation(name: str) -> sa.Table:
    """One row per /v3 request: what came in, what went out, how verification went. Never bodies or
    keys: only a body digest and, for signature mismatches, the string-to-sign the server expected.

    The journal is kept in two generations of the same shape (store/ops_repo.py): rows go to the
    newer one until it holds ``journal_keep`` of them, then the older one is emptied whole and takes
    the next rows. Row ids run on across both (the writer gives them), so the two read as one journal.
    """
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("mchid", sa.String(32), nullable=True, index=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("operation", sa.String(96), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("message", sa.String(512), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        # ok | refused | not_verified (route errors) ; verify_issue says why a refusal happened
        sa.Column("verification", sa.String(16), nullable=False),
        sa.Column("verify_field", sa.String(32), nullable=True),
        sa.Column("verify_issue", sa.String(512), nullable=True),
        sa.Column("expected_message", sa.Text, nullable=True),
        sa.Column("fault", sa.String(64), nullable=True),
        sa.Column("body_length", sa.Integer, nullable=False, server_default="0"),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
    )


request_journal = _journal_generation("request_journal")  # migration 0007
request_journal_1 = _journal_generation("request_journal_1")  # migration 0011
JOURNAL_GENERATIONS = (request_journal, request_journal_1)

# Fault rules shared by every process: matched after signature verification, before the handler.
sandbox_faults = sa.Table(
    "sandbox_faults",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("operation", sa.String(128), nullable=True),  # op id or glob ("webizpay.*"); NULL = any
    sa.Column("path", sa.String(512), nullable=True),  # glob on the request path; NULL = any
    sa.Column("mchid", sa.String(32), nullable=True),  # NULL = any merchant
    sa.Column("remaining", sa.Integer, nullable=True),  # NULL = unlimited
    sa.Column("probability", sa.Float, nullable=False, server_default="1"),
    sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
    sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
    sa.Column("note", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)
