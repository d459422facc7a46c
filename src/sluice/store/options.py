"""The `request_log:` section of sluice.yaml: where exchanges go, how they are batched, redacted and kept.

Plain dataclasses, validated by pydantic as part of `SluiceConfig` (the constraints are `annotated_types`
metadata, which pydantic enforces): the writer process rebuilds them with `request_log_config` without importing
pydantic, which would add ~20 MB to every worker's writer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Interval

PiiKind = Literal["email", "phone", "card", "iban", "ip"]
_STRICT = {"extra": "forbid"}
"""pydantic's config for these dataclasses: an unknown key in sluice.yaml is an error."""


@dataclass(frozen=True)
class CustomPattern:
    """A regular expression whose matches in bodies are replaced."""

    __pydantic_config__ = _STRICT

    pattern: str
    replacement: str = "[REDACTED]"

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern: not a valid regular expression: {exc}") from None


@dataclass(frozen=True)
class RedactionConfig:
    """Applied before anything is stored or printed. Secret headers are always removed."""

    __pydantic_config__ = _STRICT

    headers: list[str] = field(default_factory=list)
    """Header names removed in addition to Authorization, X-API-Key, api-key, Cookie and Set-Cookie."""
    pii: list[PiiKind] = field(default_factory=list)
    """Kinds of personal data scrubbed from bodies (opt-in)."""
    patterns: list[CustomPattern] = field(default_factory=list)
    metadata_only_keys: list[str] = field(default_factory=list)
    """Key ids (as in the log's key_id) whose exchanges are stored without bodies."""
    metadata_only_projects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RequestLogConfig:
    """Every exchange, persisted off the request path (SQLite by default, PostgreSQL in production)."""

    __pydantic_config__ = _STRICT

    enabled: bool = True
    database: bool = True
    """Persist to the database; false keeps only the stdout lines."""
    database_url: str | None = None
    """Overrides SLUICE_DATABASE_URL for the request log."""
    auto_migrate: bool | None = None
    """Run the migrations at start-up; unset means yes for SQLite and no for other databases."""
    store_bodies: bool = True
    max_body_bytes: Annotated[int, Ge(0)] = 1024 * 1024
    """Longer bodies are stored truncated (as text)."""
    batch_size: Annotated[int, Ge(1)] = 200
    flush_interval_seconds: Annotated[float, Gt(0)] = 1.0
    buffer_size: Annotated[int, Ge(1)] = 10_000
    """Exchanges held in memory while the database is slow or down; past it they spill to disk."""
    spill_queue_size: Annotated[int, Ge(1)] = 10_000
    """Exchanges waiting for the spill file's disk writes; only past this (or when the disk fails) are they dropped."""
    spill_path: str | None = None
    """Append-only JSONL file for what the buffer cannot hold; default `<SLUICE_DATA_DIR>/request-log-spill.jsonl`."""
    retry_initial_seconds: Annotated[float, Gt(0)] = 0.5
    retry_max_seconds: Annotated[float, Gt(0)] = 30.0
    write_timeout_seconds: Annotated[float, Gt(0)] = 10.0
    shutdown_timeout_seconds: Annotated[float, Ge(0)] = 10.0
    """How long shutdown tries the database before spilling what is left to disk."""
    retention_days: Annotated[float, Gt(0)] | None = 30.0
    """Entries older than this are deleted; null keeps them forever."""
    prune_interval_seconds: Annotated[float, Gt(0)] = 3600.0
    prune_batch_size: Annotated[int, Ge(1)] = 5000
    writer: Literal["process", "inline"] = "process"
    """Where records are built and written: a separate process per worker (the default: the gateway only hands
    over each exchange's bytes) or `inline`, on the worker's own event loop."""
    writer_priority: Literal["idle"] | Annotated[int, Interval(ge=0, le=19)] = "idle"
    """CPU priority of the writer process: `idle` (Linux's SCHED_IDLE: it runs on the CPU time requests leave, so
    it never delays one; on a core kept saturated, entries wait in the pipe, then in memory, then on disk) or a
    `nice` value, 0-19 (a share of a busy core, at the cost of the requests' tail latency)."""
    stdout: bool = True
    """One JSON line per exchange on stdout."""
    stdout_bodies: bool = False
    redaction: RedactionConfig = field(default_factory=RedactionConfig)


def request_log_config(values: Mapping[str, Any]) -> RequestLogConfig:
    """A config from `dataclasses.asdict` of one (what the writer process is sent), rebuilt without pydantic: it
    was validated when sluice.yaml was loaded."""
    redaction = dict(values.get("redaction", {}))
    redaction["patterns"] = [CustomPattern(**pattern) for pattern in redaction.get("patterns", [])]
    return RequestLogConfig(**{**values, "redaction": RedactionConfig(**redaction)})


def redaction_config(values: Mapping[str, Any]) -> RedactionConfig:
    """`request_log_config` for the redaction rules alone (what the span exporter is sent)."""
    return RedactionConfig(**{**values, "patterns": [CustomPattern(**p) for p in values.get("patterns", [])]})
