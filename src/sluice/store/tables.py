"""The request log table: one row per exchange, JSON bodies (JSONB on PostgreSQL), UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, DateTime, Dialect, Float, Index, Integer, String, Table, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Body = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class RequestLog(Base):
    """One exchange: who, what, how long, how many tokens, what it cost, and (unless withheld) the bodies."""

    __tablename__ = "request_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(128))
    key_hash: Mapped[str | None] = mapped_column(String(64))
    project: Mapped[str | None] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(512))
    method: Mapped[str] = mapped_column(String(16))
    operation: Mapped[str | None] = mapped_column(String(32))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(256))
    upstream_model: Mapped[str | None] = mapped_column(String(256))
    request_headers: Mapped[dict[str, Any] | None] = mapped_column(Body)
    request_body: Mapped[Any] = mapped_column(Body, nullable=True)
    response_body: Mapped[Any] = mapped_column(Body, nullable=True)
    response_text: Mapped[str | None] = mapped_column(Text)
    latency_total_ms: Mapped[float | None] = mapped_column(Float)
    latency_upstream_ms: Mapped[float | None] = mapped_column(Float)
    time_to_first_token_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    client_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    bodies_withheld: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_request_logs_timestamp_id", "timestamp", "id"),
        Index("ix_request_logs_key_timestamp", "key_id", "timestamp"),
        Index("ix_request_logs_model_timestamp", "model", "timestamp"),
        Index("ix_request_logs_trace_id", "trace_id"),
    )


REQUEST_LOGS = cast(Table, RequestLog.__table__)
COLUMNS = tuple(column.name for column in REQUEST_LOGS.columns)
JSON_COLUMNS = ("request_headers", "request_body", "response_body")
