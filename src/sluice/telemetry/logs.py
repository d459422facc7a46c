"""Structured logs: every log line on stdout is one JSON object (structlog), or a readable line for people.

`configure_logging` routes the standard library's loggers (Sluice's own, uvicorn's, granian's, OpenTelemetry's)
through structlog's formatter, so nothing unstructured reaches stdout. The one-line-per-request log is the
request log's stdout sink (`store/recorder.py`): JSON lines made by `store/lines.py`, or, in console format,
the lines `render_request_lines` makes, so both follow SLUICE_LOG_FORMAT.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

from sluice.telemetry.supervisor_logs import LogFormat, effective_format

__all__ = ["LogFormat", "configure_logging", "effective_format", "render_request_lines"]

_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False))  # locals could hold keys or prompts
_QUIET = {"opentelemetry": logging.ERROR, "urllib3": logging.WARNING, "aiosqlite": logging.WARNING,
          "alembic.runtime.plugins": logging.WARNING}


def _json_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(requested: LogFormat = "json", *, level: int = logging.INFO, stream: TextIO | None = None,
                      ) -> LogFormat:
    """Configure structlog and the standard library's root logger; returns the format in effect."""
    stream = stream if stream is not None else sys.stdout
    chosen = effective_format(requested, stream)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (structlog.dev.ConsoleRenderer(colors=False) if chosen == "console"
                           else structlog.processors.JSONRenderer(serializer=_json_dumps))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([] if chosen == "console" else [_TRACEBACKS]), renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):  # an earlier call's, or the supervisor's a granian worker inherits (forked)
        if getattr(old, "_sluice", False):
            root.removeHandler(old)
    handler._sluice = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "granian", "_granian", "granian.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.setLevel(logging.NOTSET)
        named.propagate = True
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(quiet)
    return chosen


def render_request_lines(documents: Iterable[dict[str, Any]], log_format: LogFormat = "json") -> bytes:
    """One line per request log document: compact JSON, or `key=value` pairs after the method and path."""
    if log_format == "json":
        return b"".join(orjson.dumps(document, default=str) + b"\n" for document in documents)
    return "".join(_console_line(document) + "\n" for document in documents).encode()


def _console_line(document: dict[str, Any]) -> str:
    timing = document.get("timing") or {}
    response = document.get("response") or {}
    provider = document.get("provider") or {}
    fields = {"status": response.get("status_code"), "ms": timing.get("total_latency_ms"),
              "model": provider.get("model_requested"), "provider": provider.get("name"),
              "key": document.get("api_key_id"), "request_id": document.get("request_id"),
              "trace_id": (document.get("metadata") or {}).get("trace_id")}
    pairs = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
    return f"{document.get('timestamp_utc', '')} {document.get('method', '')} {document.get('endpoint', '')} {pairs}"
