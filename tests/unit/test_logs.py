"""Structured logs: JSON lines (or a console line when asked for on a terminal), nothing unstructured."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from sluice.telemetry.logs import configure_logging, render_request_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_standard_and_structlog_loggers_write_json_lines() -> None:
    stream = io.StringIO()
    assert configure_logging("json", stream=stream) == "json"
    logging.getLogger("sluice.http").warning("upstream %s is slow", "mock", extra={"request_id": "r1"})
    logging.getLogger("uvicorn.error").info("started")
    structlog.get_logger("sluice.test").info("event happened", count=2)
    try:
        raise ValueError("api key sk-live-123 in a local")
    except ValueError:
        secret = "sk-live-123"  # noqa: F841  (locals must not be logged)
        logging.getLogger("sluice").exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["upstream mock is slow", "started", "event happened", "failed"]
    assert lines[0]["level"] == "warning" and lines[0]["request_id"] == "r1" and lines[0]["logger"] == "sluice.http"
    assert lines[2]["count"] == 2 and lines[0]["timestamp"].endswith("Z")
    assert lines[3]["exception"][0]["exc_type"] == "ValueError"
    assert "locals" not in json.dumps(lines[3]["exception"])


def test_console_format_only_on_a_terminal() -> None:
    assert configure_logging("console", stream=io.StringIO()) == "json"
    terminal = Terminal()
    assert configure_logging("console", stream=terminal) == "console"
    logging.getLogger("sluice").info("hello")
    assert "hello" in terminal.getvalue() and not terminal.getvalue().startswith("{")


def test_request_lines_render_as_json_or_for_people() -> None:
    document = {"timestamp_utc": "2026-11-25T12:00:00+00:00", "method": "POST", "endpoint": "/v1/chat/completions",
                "request_id": "r1", "api_key_id": "k1", "response": {"status_code": 200},
                "timing": {"total_latency_ms": 12.5}, "provider": {"name": "mock", "model_requested": "mock"},
                "metadata": {"trace_id": "ab" * 16}}
    assert json.loads(render_request_lines([document])) == document
    line = render_request_lines([document], "console").decode()
    assert line.startswith("2026-11-25T12:00:00+00:00 POST /v1/chat/completions status=200 ms=12.5 model=mock")
    assert "trace_id=" + "ab" * 16 in line
