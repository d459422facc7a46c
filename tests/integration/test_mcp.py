"""MCP at `/mcp` through the official `mcp` client: Sluice's own tools, and an SDK-built upstream behind the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.fastmcp import FastMCP
from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import serve
from tests.telemetry_support import Collector

ADMIN = "sk-admin-mcp"
WEATHER_KEY = "sk-weather-caller"
UPSTREAM_SECRET = "Bearer upstream-secret-123"
CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{flush_interval_seconds: 0.05}}
mcp_servers:
  weather: {{url: "{upstream}/mcp", headers: {{Authorization: "{secret}"}}}}
{more_servers}
static_keys:
  - {{key: {weather_key}, name: weather-user, mcp: {{allow: ["weather__*", "local__*"], deny: ["weather__delete_*"]}}}}
"""
STDIO_SERVER = """
import os
from mcp.server.fastmcp import FastMCP
from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS
server = FastMCP("local")
@server.tool()
def token() -> str:
    return os.environ.get("LOCAL_TOKEN", "none") + "/" + os.environ.get("SLUICE_MCP_TEST_SECRET", "unseen")
server.run("stdio")
"""


def weather_app(seen: list[dict[str, str]]) -> Any:
    """An upstream MCP server built with the SDK; `seen` gets the headers of every HTTP request it receives."""
    server = FastMCP("weather", stateless_http=True, json_response=True)

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather in `city`."""
        return f"sunny in {city}"

    @server.tool()
    def delete_city(city: str) -> str:
        """Forget a city (denied to the test key)."""
        seen.append({"tool-called": "delete_city"})
        return f"deleted {city}"

    app = server.streamable_http_app()

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return recording


@contextlib.contextmanager
def gateway_with_upstream(more_servers: str = "", **settings: Any) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    with serve(weather_app(seen)) as upstream:
        config = CONFIG.format(upstream=upstream, secret=UPSTREAM_SECRET, weather_key=WEATHER_KEY,
                               more_servers=more_servers)
        with run_gateway(config, admin_key=ADMIN, **settings) as url:
            yield url, seen


@contextlib.asynccontextmanager
async def mcp_session(url: str, key: str | None, logs: list[str] | None = None
                      ) -> AsyncIterator[tuple[ClientSession, types.InitializeResult]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        if logs is not None:
            logs.append(str(params.data))

    async with (httpx.AsyncClient(headers=headers, timeout=10) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write, logging_callback=on_log) as session):
        initialized = await session.initialize()
        yield session, initialized


def text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, list[dict[str, str]]]]:
    with gateway_with_upstream() as running:
        yield running


def test_own_tools_listed_and_called_with_a_key(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway

    async def scenario() -> tuple[types.InitializeResult, list[str], types.CallToolResult, types.CallToolResult]:
        async with mcp_session(url + "/mcp", DEV_KEY) as (session, initialized):
            tools = [tool.name for tool in (await session.list_tools()).tools]
            models = await session.call_tool("list_models", {})
            reply = await session.call_tool("chat", {"model": "mock", "prompt": "hello from mcp"})
            return initialized, tools, models, reply

    initialized, tools, models, reply = asyncio.run(scenario())
    assert initialized.protocolVersion == types.LATEST_PROTOCOL_VERSION
    assert initialized.serverInfo.name == "sluice"
    assert tools == ["list_models", "chat"]  # no `mcp` scope: no upstream tool
    assert not models.isError and models.structuredContent == {"models": ["mock"]}
    assert not reply.isError and "hello from mcp" in text_of(reply)


@pytest.mark.parametrize("asked", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2099-01-01"])
def test_the_protocol_version_is_negotiated(gateway: tuple[str, list[dict[str, str]]], asked: str) -> None:
    """The caller gets the version it asked for when the SDK supports it, else the latest (the client decides)."""
    url, _ = gateway
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    reply = httpx.post(url + "/mcp", json=message, headers={"Authorization": f"Bearer {DEV_KEY}",
                                                            "Accept": "application/json, text/event-stream"})
    assert reply.status_code == 200
    [data] = [line[len("data: "):] for line in reply.text.splitlines() if line.startswith("data: ")]
    answered = json.loads(data)["result"]["protocolVersion"]
    assert answered == (asked if asked in SUPPORTED_PROTOCOL_VERSIONS else types.LATEST_PROTOCOL_VERSION)


def test_a_chat_with_a_model_the_key_may_not_use_is_an_error_result(
        gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway

    async def scenario() -> types.CallToolResult:
        async with mcp_session(url + "/mcp", DEV_KEY) as (session, _):
            return await session.call_tool("chat", {"model": "no-such-model", "prompt": "hi"})

    result = asyncio.run(scenario())
    assert result.isError and "no-such-model" in text_of(result)


def test_no_key_is_401_and_the_client_raises(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway

    async def scenario() -> None:
        async with mcp_session(url + "/mcp", None):
            pass

    with pytest.raises(ExceptionGroup) as raised:  # the SDK's transport task group wraps the HTTP error
        asyncio.run(scenario())
    [error] = _leaves(raised.value)
    assert isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 401
    plain = httpx.post(url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       headers={"Accept": "application/json, text/event-stream"})
    assert plain.status_code == 401 and plain.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(url + "/mcp/weather", json={}, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401


def test_upstream_tools_prefixed_and_a_call_relayed_with_the_upstream_credential(
        gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = gateway
    seen.clear()

    async def scenario() -> tuple[list[str], list[str], types.CallToolResult, types.CallToolResult]:
        async with mcp_session(url + "/mcp", WEATHER_KEY) as (session, _):
            aggregated = [tool.name for tool in (await session.list_tools()).tools]
            relayed = await session.call_tool("weather__forecast", {"city": "Paris"})
        async with mcp_session(url + "/mcp/weather", WEATHER_KEY) as (session, _):
            direct = [tool.name for tool in (await session.list_tools()).tools]
            direct_call = await session.call_tool("forecast", {"city": "Oslo"})
        return aggregated, direct, relayed, direct_call

    aggregated, direct, relayed, direct_call = asyncio.run(scenario())
    assert aggregated == ["list_models", "chat", "weather__forecast"]  # delete_city is denied, so not listed
    assert direct == ["forecast"]
    assert not relayed.isError and text_of(relayed) == "sunny in Paris"
    assert not direct_call.isError and text_of(direct_call) == "sunny in Oslo"
    assert seen, "the upstream was never called"
    assert all(headers.get("authorization") == UPSTREAM_SECRET for headers in seen)
    assert not any(WEATHER_KEY in value for headers in seen for value in headers.values())
    assert not any("x-api-key" in headers for headers in seen)


def test_a_denied_tool_is_refused_with_a_clear_error(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = gateway
    seen.clear()

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with mcp_session(url + "/mcp", WEATHER_KEY) as (session, _):
            denied = await session.call_tool("weather__delete_city", {"city": "Paris"})
        async with mcp_session(url + "/mcp", DEV_KEY) as (session, _):
            unscoped = await session.call_tool("weather__forecast", {"city": "Paris"})
        return denied, unscoped

    denied, unscoped = asyncio.run(scenario())
    assert denied.isError and "'weather__delete_city' is not permitted" in text_of(denied)
    assert unscoped.isError and "no 'mcp' scope" in text_of(unscoped)
    assert {"tool-called": "delete_city"} not in seen  # refused at the gateway: the upstream never ran it


def test_a_session_with_no_permitted_tool_is_told_so(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway
    logs: list[str] = []

    async def scenario() -> tuple[types.InitializeResult, types.ListToolsResult]:
        async with mcp_session(url + "/mcp/weather", DEV_KEY, logs) as (session, initialized):
            return initialized, await session.list_tools()

    initialized, listed = asyncio.run(scenario())
    assert listed.tools == []
    assert initialized.instructions is not None
    assert "No tools are permitted for this API key" in initialized.instructions
    assert any("No tools are permitted" in line and "'mcp' scope" in line for line in logs)
    assert listed.meta is not None and "No tools are permitted" in listed.meta["io.sluice/notices"][0]


def test_an_unknown_server_is_404_and_get_streams_are_refused(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway
    reply = httpx.post(url + "/mcp/nowhere", json={}, headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert reply.status_code == 404 and "nowhere" in reply.json()["error"]["message"]
    stream = httpx.get(url + "/mcp", headers={"Authorization": f"Bearer {DEV_KEY}", "Accept": "text/event-stream"})
    assert stream.status_code == 405 and stream.headers["allow"] == "POST"


def test_a_stdio_server_started_by_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its `env` reaches it over a minimal environment: a variable of the gateway's own does not."""
    monkeypatch.setenv("SLUICE_MCP_TEST_SECRET", "gateway-only")
    local = f"  local: {{command: {json.dumps(sys.executable)}, args: [-c, {json.dumps(STDIO_SERVER)}], " \
            "env: {LOCAL_TOKEN: local-secret}}"
    with gateway_with_upstream(local) as (url, _):
        async def scenario() -> tuple[list[str], types.CallToolResult]:
            async with mcp_session(url + "/mcp", WEATHER_KEY) as (session, _):
                names = [tool.name for tool in (await session.list_tools()).tools]
                return names, await session.call_tool("local__token", {})

        names, result = asyncio.run(scenario())
    assert "local__token" in names and "weather__forecast" in names
    assert not result.isError and text_of(result) == "local-secret/unseen"


def test_tool_calls_are_rows_in_the_request_log() -> None:
    with gateway_with_upstream() as (url, _):
        async def scenario() -> None:
            async with mcp_session(url + "/mcp", WEATHER_KEY) as (session, _):
                await session.call_tool("weather__forecast", {"city": "Lima"})
                await session.call_tool("weather__delete_city", {"city": "Lima"})
                await session.call_tool("chat", {"model": "mock", "prompt": "logged"})

        asyncio.run(scenario())
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            rows = _entries(admin, 4)
    by_model = {(row["operation"], row["provider"]["model_requested"]): row for row in rows}
    relayed = by_model[("mcp", "forecast")]
    assert relayed["provider"]["name"] == "weather" and relayed["endpoint"] == "/mcp"
    assert relayed["request"]["body"] == {"city": "Lima"}
    assert relayed["response"]["status_code"] == 200 and relayed["error"] is None
    assert relayed["response"]["body"]["content"][0]["text"] == "sunny in Lima"
    assert relayed["request"]["headers"]["authorization"] == "[REDACTED]"
    refused = by_model[("mcp", "delete_city")]
    assert refused["response"]["status_code"] == 403 and "not permitted" in refused["error"]
    assert by_model[("mcp", "chat")]["provider"]["name"] == "sluice"
    chat = by_model[("chat", "mock")]
    assert chat["endpoint"] == "/mcp" and chat["usage"]["total_tokens"] > 0
    assert len({row["api_key_id"] for row in rows}) == 1


def test_a_tool_call_is_a_span_under_the_mcp_request_and_the_upstream_continues_it() -> None:
    collector = Collector()
    with serve(collector.app) as traces, gateway_with_upstream(phoenix_collector_endpoint=traces) as (url, seen):
        async def scenario() -> None:
            async with mcp_session(url + "/mcp", WEATHER_KEY) as (session, _):
                seen.clear()
                await session.call_tool("weather__forecast", {"city": "Rome"})

        asyncio.run(scenario())
        spans = _until(lambda: _spans_named(collector, "mcp weather", "POST /mcp"))
    [tool] = [span for span in spans if span.name == "mcp weather"]
    servers = {span.span_id: span for span in spans if span.name == "POST /mcp"}
    assert tool.parent_span_id in servers and tool.trace_id == servers[tool.parent_span_id].trace_id
    traceparents = {headers["traceparent"] for headers in seen if "traceparent" in headers}
    assert f"00-{tool.trace_id.hex()}-{tool.span_id.hex()}-01" in traceparents


def _spans_named(collector: Collector, *names: str) -> list[Any]:
    spans = [span for _, _, body in collector.seen
             for resource in ExportTraceServiceRequest.FromString(body).resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    return spans if all(any(span.name == name for span in spans) for name in names) else []


def _until(found: Any, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _entries(client: httpx.Client, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        data: list[dict[str, Any]] = client.get("/admin/logs", params={"include_bodies": "true"}).json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
