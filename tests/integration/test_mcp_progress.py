"""The `chat` tool streamed as MCP progress notifications, through the official client's `progress_callback`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import DEV_KEY, run_gateway
from tests.integration.test_mcp import mcp_session, text_of

ADMIN = "sk-admin-mcp-progress"
CONFIG = """
providers:
  mock: {type: mock, chunks: 4, chunk_delay_ms: 20}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {flush_interval_seconds: 0.05}
"""
PROMPT = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with run_gateway(CONFIG, admin_key=ADMIN) as url:
        yield url


def chat_with_progress(url: str, arguments: dict[str, Any]
                       ) -> tuple[list[tuple[str, float, str | None]], types.CallToolResult]:
    """The events in the order the client saw them: each progress notification, then the result."""
    events: list[tuple[str, float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append(("progress", progress, message))

    async def scenario() -> types.CallToolResult:
        async with mcp_session(url + "/mcp", DEV_KEY) as (session, _):
            result = await session.call_tool("chat", arguments, progress_callback=on_progress)
            events.append(("result", 0, None))
            return result

    return events, asyncio.run(scenario())


def test_a_chat_with_a_progress_token_streams_its_text_as_progress(gateway: str) -> None:
    events, result = chat_with_progress(gateway, {"model": "mock", "prompt": PROMPT})
    assert not result.isError
    text = text_of(result)
    assert PROMPT in text
    progress = [event for event in events if event[0] == "progress"]
    assert len(progress) >= 3, events
    assert events[-1][0] == "result"  # every notification arrived before the result
    assert "".join(message or "" for _, _, message in progress) == text
    counts = [count for _, count, _ in progress]
    assert counts == sorted(set(counts)) and counts[-1] == len(text)  # characters so far, increasing
    assert result.structuredContent is not None and result.structuredContent["text"] == text
    usage = result.structuredContent["usage"]
    assert usage is not None and usage["total_tokens"] > 0


def test_without_a_progress_token_no_notification_is_sent(gateway: str) -> None:
    seen: list[Any] = []

    async def record(message: Any) -> None:
        seen.append(message)

    async def scenario() -> types.CallToolResult:
        async with (httpx.AsyncClient(headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10) as http,
                    streamable_http_client(gateway + "/mcp", http_client=http) as (read, write, _),
                    ClientSession(read, write, message_handler=record) as session):
            await session.initialize()
            return await session.call_tool("chat", {"model": "mock", "prompt": PROMPT})

    result = asyncio.run(scenario())
    assert not result.isError and PROMPT in text_of(result)
    assert not any(isinstance(item, types.ServerNotification) and isinstance(item.root, types.ProgressNotification)
                   for item in seen)


def test_a_streamed_chat_is_a_streamed_row_with_its_usage(gateway: str) -> None:
    events, result = chat_with_progress(gateway, {"model": "mock", "prompt": "logged as a stream"})
    assert not result.isError and len(events) > 2
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as admin:
        row = _until(lambda: _chat_row(admin, "logged as a stream"))
    assert row["endpoint"] == "/mcp" and row["response"]["status_code"] == 200 and row["error"] is None
    assert row["stream"] is True
    assert row["usage"]["total_tokens"] == result.structuredContent["usage"]["total_tokens"]  # type: ignore[index]


def test_a_refused_model_with_a_progress_token_is_an_error_result_and_no_progress(gateway: str) -> None:
    events, result = chat_with_progress(gateway, {"model": "no-such-model", "prompt": "hi"})
    assert result.isError and "no-such-model" in text_of(result)
    assert [event[0] for event in events] == ["result"]


def _chat_row(admin: httpx.Client, prompt: str) -> dict[str, Any] | None:
    rows = admin.get("/admin/logs", params={"include_bodies": "true"}).json()["data"]
    for row in rows:
        body = row["request"].get("body") or {}
        if row["operation"] == "chat" and isinstance(body, dict) and prompt in str(body.get("messages")):
            return dict(row)
    return None


def _until(found: Any, within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
