"""The tables: request logs (one row per exchange), managed API keys, spend per key and period, prompt templates and
service instance changes added through the admin API, and the audit trail of those changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sluice.store import columns


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
    cache: Mapped[str | None] = mapped_column(String(8), nullable=True)
    """HIT or MISS for a model with a response cache (docs/caching.md)."""
    routing: Mapped[Any] = mapped_column(Body, nullable=True)
    """How routing got to the upstream that answered: `{"hops": [...]}` (docs/routing.md); None for a first try."""

    __table_args__ = (
        Index("ix_request_logs_timestamp_id", "timestamp", "id"),
        Index("ix_request_logs_key_timestamp", "key_id", "timestamp"),
        Index("ix_request_logs_model_timestamp", "model", "timestamp"),
        Index("ix_request_logs_trace_id", "trace_id"),
    )


REQUEST_LOGS = cast(Table, RequestLog.__table__)
COLUMNS = columns.COLUMNS
JSON_COLUMNS = columns.JSON_COLUMNS


def _kind(column: Column[Any]) -> str:
    kind = column.type
    return ("json" if column.name in JSON_COLUMNS else "timestamp" if isinstance(kind, UTCDateTime)
            else "boolean" if isinstance(kind, Boolean) else "integer" if isinstance(kind, Integer)
            else "float" if isinstance(kind, Float) else "text")


if tuple(column.name for column in REQUEST_LOGS.columns) != COLUMNS or {
        column.name: _kind(column) for column in REQUEST_LOGS.columns} != columns.KINDS:
    # records, inserts and stdout lines go by store/columns.py, by position: it must describe this table
    raise RuntimeError("request_logs columns changed: update store/columns.py (and records.py, lines.py)")


class ApiKey(Base):
    """A managed API key: only its peppered hash is stored; `prefix` is the part shown for recognition."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scopes: Mapped[dict[str, Any]] = mapped_column(JSON)
    """`models`, `providers`, `projects` (lists, or null for all) and `admin` (bool)."""
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A `RateLimit` as JSON; null means `limits.default_key`."""
    budget: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A `Budget` as JSON; null means `limits.default_budget`."""
    key_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    replaced_by: Mapped[str | None] = mapped_column(String(40))
    """The id of the key a rotation made to replace this one."""


class KeySpend(Base):
    """Spend per key and budget period, accrued atomically (`spent_usd = spent_usd + :cost`) by every instance."""

    __tablename__ = "key_spend"

    key_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    """`2026-11-25` (daily), `2026-W48` (weekly), `2026-11` (monthly) or `total`."""
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromptTemplateRow(Base):
    """A prompt template version added through the admin API (config templates are never stored)."""

    __tablename__ = "prompt_templates"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ServiceInstanceRow(Base):
    """An admin API change to a service's instances, applied on top of sluice.yaml by every process: an instance
    added (or re-weighted), removed, drained or restored."""

    __tablename__ = "service_instances"

    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float)
    """None: the weight sluice.yaml gives it."""
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoredResponseRow(Base):
    """A `/v1/responses` answer kept (`store`, the default) so that `previous_response_id` continues the
    conversation on any instance and `GET /v1/responses/{id}` finds it."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(64))
    """The key that made it: only that key may read it or continue from it."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    conversation: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The chat messages of every turn so far, this one's answer last (what a next turn sends before its input)."""
    response: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditEventRow(Base):
    """One change made through the admin API (http/admin_audit.py): who, what, to what; never a secret."""

    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """UUIDv7-shaped (store/stamps.py): ids sort by the time they were made."""
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    """`admin-key` for SLUICE_ADMIN_KEY, else the admin-scoped key's id."""
    action: Mapped[str] = mapped_column(String(64))
    """`key.create`, `service.instance.drain`, `prompt.add`, ..."""
    target: Mapped[str] = mapped_column(String(1024))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What changed: field → new value."""


API_KEYS = cast(Table, ApiKey.__table__)
KEY_SPEND = cast(Table, KeySpend.__table__)
PROMPT_TEMPLATES = cast(Table, PromptTemplateRow.__table__)
SERVICE_INSTANCES = cast(Table, ServiceInstanceRow.__table__)
STORED_RESPONSES = cast(Table, StoredResponseRow.__table__)
AUDIT_EVENTS = cast(Table, AuditEventRow.__table__)
