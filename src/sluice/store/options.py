"""The `request_log:` section of sluice.yaml: where exchanges go, how they are batched, redacted and kept."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PiiKind = Literal["email", "phone", "card", "iban", "ip"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomPattern(_Strict):
    """A regular expression whose matches in bodies are replaced."""

    pattern: str
    replacement: str = "[REDACTED]"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RedactionConfig(_Strict):
    """Applied before anything is stored or printed. Secret headers are always removed."""

    headers: list[str] = []
    """Header names removed in addition to Authorization, X-API-Key, api-key, Cookie and Set-Cookie."""
    pii: list[PiiKind] = []
    """Kinds of personal data scrubbed from bodies (opt-in)."""
    patterns: list[CustomPattern] = []
    metadata_only_keys: list[str] = []
    """Key ids (as in the log's key_id) whose exchanges are stored without bodies."""
    metadata_only_projects: list[str] = []


class RequestLogConfig(_Strict):
    """Every exchange, persisted off the request path (SQLite by default, PostgreSQL in production)."""

    enabled: bool = True
    database: bool = True
    """Persist to the database; false keeps only the stdout lines."""
    database_url: str | None = None
    """Overrides SLUICE_DATABASE_URL for the request log."""
    auto_migrate: bool | None = None
    """Run the migrations at start-up; unset means yes for SQLite and no for other databases."""
    store_bodies: bool = True
    max_body_bytes: int = Field(1024 * 1024, ge=0)
    """Longer bodies are stored truncated (as text)."""
    batch_size: int = Field(200, ge=1)
    flush_interval_seconds: float = Field(1.0, gt=0)
    buffer_size: int = Field(10_000, ge=1)
    """Exchanges held in memory while the database is slow or down; past it they spill to disk."""
    spill_queue_size: int = Field(10_000, ge=1)
    """Exchanges waiting for the spill file's disk writes; only past this (or when the disk fails) are they dropped."""
    spill_path: str | None = None
    """Append-only JSONL file for what the buffer cannot hold; default `<SLUICE_DATA_DIR>/request-log-spill.jsonl`."""
    retry_initial_seconds: float = Field(0.5, gt=0)
    retry_max_seconds: float = Field(30.0, gt=0)
    write_timeout_seconds: float = Field(10.0, gt=0)
    shutdown_timeout_seconds: float = Field(10.0, ge=0)
    """How long shutdown tries the database before spilling what is left to disk."""
    retention_days: float | None = Field(30.0, gt=0)
    """Entries older than this are deleted; null keeps them forever."""
    prune_interval_seconds: float = Field(3600.0, gt=0)
    prune_batch_size: int = Field(5000, ge=1)
    writer: Literal["process", "inline"] = "process"
    """Where records are built and written: a separate process per worker (the default: the gateway only hands
    over each exchange's bytes) or `inline`, on the worker's own event loop."""
    writer_priority: Literal["idle"] | Annotated[int, Field(ge=0, le=19)] = "idle"
    """CPU priority of the writer process: `idle` (Linux's SCHED_IDLE: it runs on the CPU time requests leave, so
    it never delays one; on a core kept saturated, entries wait in the pipe, then in memory, then on disk) or a
    `nice` value, 0-19 (a share of a busy core, at the cost of the requests' tail latency)."""
    stdout: bool = True
    """One JSON line per exchange on stdout."""
    stdout_bodies: bool = False
    redaction: RedactionConfig = RedactionConfig()

    @model_validator(mode="before")
    @classmethod
    def _prices_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prices" in data:
            raise ValueError("prices: moved to the top-level `prices:` section (see docs/budgets.md)")
        return data
