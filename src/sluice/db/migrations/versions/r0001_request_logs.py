"""The request_logs table.

Revision ID: 0001_request_logs
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from sluice.db.tables import UTCDateTime

revision: str = "0001_request_logs"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BODY = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "request_logs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(128), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("project", sa.String(128), nullable=True),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(32), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("upstream_model", sa.String(256), nullable=True),
        sa.Column("request_headers", _BODY, nullable=True),
        sa.Column("request_body", _BODY, nullable=True),
        sa.Column("response_body", _BODY, nullable=True),
        sa.Column("response_text", sa.Text(), nullable=True),
        sa.Column("latency_total_ms", sa.Float(), nullable=True),
        sa.Column("latency_upstream_ms", sa.Float(), nullable=True),
        sa.Column("time_to_first_token_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("client_disconnected", sa.Boolean(), nullable=False),
        sa.Column("bodies_withheld", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_request_logs_timestamp_id", "request_logs", ["timestamp", "id"])
    op.create_index("ix_request_logs_key_timestamp", "request_logs", ["key_id", "timestamp"])
    op.create_index("ix_request_logs_model_timestamp", "request_logs", ["model", "timestamp"])
    op.create_index("ix_request_logs_trace_id", "request_logs", ["trace_id"])


def downgrade() -> None:
    op.drop_table("request_logs")
