"""Logging for granian's supervisor process: the workers' JSON lines, made with the standard library alone.

The supervisor only starts, watches and replaces workers, and logs a few lines about it. structlog and orjson
would add ~3 MB to it (RSS 32 -> 29 MB without them, `bench/memory_probe.py`), so it renders the same keys as
the workers' structlog lines (`event`, `level`, `logger`, `timestamp`, and `exception` as text) with `json`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "console"]

GRANIAN_LOGGING: dict[str, Any] = {
    "loggers": {  # granian's own loggers hand their records to the root logger's handler
        "_granian": {"handlers": [], "level": "INFO", "propagate": True},
        "granian.access": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
"""`log_dictconfig` for granian's Server; it replaces granian's default `[INFO] …` stdout lines."""


def effective_format(requested: LogFormat, stream: TextIO | None = None) -> LogFormat:
    """`console` only when asked for and stdout is a terminal; JSON otherwise (log collectors read JSON)."""
    stream = stream if stream is not None else sys.stdout
    return "console" if requested == "console" and stream.isatty() else "json"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, with the keys of the workers' lines."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "event": record.getMessage(), "level": record.levelname.lower(), "logger": record.name,
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_supervisor_logging(requested: LogFormat = "json", stream: TextIO | None = None) -> LogFormat:
    """Route the root logger (and granian's, through GRANIAN_LOGGING) to stdout; returns the format in effect."""
    stream = stream if stream is not None else sys.stdout
    chosen = effective_format(requested, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter() if chosen == "json"
                         else logging.Formatter("%(asctime)s [%(levelname)-9s] %(message)s [%(name)s]"))
    handler._sluice = True  # type: ignore[attr-defined]  # a forked worker's configure_logging replaces it
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return chosen
