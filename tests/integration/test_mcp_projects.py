"""Project endpoints as MCP tools at `/mcp`, through the official `mcp` client: schemas, calls, scopes, limits, logs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import types

from sluice.projects.demo import SummaryRequest, SummaryResult
from tests.conftest import DEV_KEY, run_gateway
from tests.integration.test_mcp import _spans_named, _until, mcp_session, text_of
from tests.servers import serve
from tests.telemetry_support import Collector

ADMIN = "sk-admin-mcp-projects"
OTHER_ONLY = "sk-other-project-only"
NO_DEMO_TOOL = "sk-demo-tool-denied"
FOUR_A_MINUTE = "sk-four-requests-a-minute"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: demo, module: sluice.projects.demo}
  - {name: other, module: sluice.projects.demo}
discover_projects: false
request_log: {flush_interval_seconds: 0.05}
static_keys:
  - {key: sk-other-project-only, name: other-only, projects: [other]}
  - {key: sk-demo-tool-denied, name: no-demo-tool, mcp: {deny: ["project__demo__*"]}}
  - {key: sk-four-requests-a-minute, name: four, limits: {requests_per_minute: 4}}
"""
DEMO, OTHER = "project__demo__summary", "project__other__summary"
TEXT = "Sluice is a gateway. It routes requests to many providers."


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with run_gateway(CONFIG, admin_key=ADMIN) as url:
        yield url


def session_run(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]
                ) -> tuple[list[types.Tool], list[types.CallToolResult]]:
    async def scenario() -> tuple[list[types.Tool], list[types.CallToolResult]]:
        async with mcp_session(url + "/mcp", key) as (session, _):
            tools = (await session.list_tools()).tools
            return tools, [await session.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(scenario())


def test_each_project_post_route_is_a_tool_with_the_body_models_schema(gateway: str) -> None:
    tools, _ = session_run(gateway, DEV_KEY, [])
    by_name = {tool.name: tool for tool in tools}
    assert [tool.name for tool in tools] == ["list_models", "chat", DEMO, OTHER]
    schema = by_name[DEMO].inputSchema
    assert schema == SummaryRequest.model_json_schema()
    assert schema["required"] == ["text"] and schema["properties"]["max_words"]["maximum"] == 500
    assert "Summarise a text" in (by_name[DEMO].description or "")
    assert by_name[DEMO].outputSchema == SummaryResult.model_json_schema(mode="serialization")


def test_a_call_answers_with_the_routes_json(gateway: str) -> None:
    _, (result,) = session_run(gateway, DEV_KEY, [(DEMO, {"text": TEXT, "max_words": 20})])
    assert not result.isError, text_of(result)
    structured = result.structuredContent
    assert structured is not None and set(structured) == {"title", "summary", "steps"}
    assert [step["model"] for step in structured["steps"]] == ["mock", "mock"]
    assert structured["summary"] and text_of(result).startswith("{")


def test_invalid_arguments_are_the_routes_422_as_an_error_result(gateway: str) -> None:
    _, (missing, too_long) = session_run(gateway, DEV_KEY, [(DEMO, {}), (DEMO, {"text": TEXT, "max_words": 1})])
    assert missing.isError and text_of(missing).startswith("4") and "text" in text_of(missing)
    assert too_long.isError and "max_words" in text_of(too_long)


def test_a_key_that_may_not_use_a_project_does_not_see_its_tools_and_is_refused(gateway: str) -> None:
    tools, (refused, allowed) = session_run(gateway, OTHER_ONLY, [(DEMO, {"text": TEXT}), (OTHER, {"text": TEXT})])
    assert [tool.name for tool in tools] == ["list_models", "chat", OTHER]
    assert refused.isError and "may not call project 'demo'" in text_of(refused)
    assert not allowed.isError


def test_an_mcp_deny_pattern_hides_and_refuses_project_tools(gateway: str) -> None:
    tools, (refused,) = session_run(gateway, NO_DEMO_TOOL, [(DEMO, {"text": TEXT})])
    assert [tool.name for tool in tools] == ["list_models", "chat", OTHER]
    assert refused.isError and "not permitted" in text_of(refused)


def test_the_keys_rate_limit_counts_the_internal_project_request(gateway: str) -> None:
    """initialize, initialized, tools/list and tools/call are the key's four requests of the minute; the project
    request the call makes inside the gateway is a fifth, refused (429) as an HTTP one would be."""
    _, (refused,) = session_run(gateway, FOUR_A_MINUTE, [(OTHER, {"text": TEXT})])
    assert refused.isError and text_of(refused).startswith("429: ")


def test_a_project_tool_call_is_logged_like_an_http_call(gateway: str) -> None:
    """The tool call's `mcp` row, and the project's own chat rows, under the MCP request's id."""
    session_run(gateway, DEV_KEY, [(OTHER, {"text": "logged through mcp"})])
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        rows = _until(lambda: _rows_of_the_call(admin, "logged through mcp"))
    [tool] = [row for row in rows if row["operation"] == "mcp"]
    assert tool["endpoint"] == "/mcp" and tool["response"]["status_code"] == 200
    assert tool["provider"]["model_requested"] == OTHER and tool["metadata"]["project"] == "other"
    assert tool["response"]["body"]["structuredContent"]["steps"][0]["model"] == "mock"
    chats = [row for row in rows if row["operation"] == "chat"]
    assert {row["endpoint"] for row in chats} == {"/projects/other/summary"}
    assert {row["metadata"]["project"] for row in chats} == {"other"}
    assert all(row["usage"]["total_tokens"] > 0 for row in chats)


def _rows_of_the_call(admin: httpx.Client, text: str) -> list[dict[str, Any]]:
    """The rows sharing the request id of the tool call made with `text`, once the two chat rows are in too."""
    data: list[dict[str, Any]] = admin.get("/admin/logs", params={"include_bodies": "true", "limit": 200}
                                           ).json()["data"]
    ids = {row["request_id"] for row in data if row["operation"] == "mcp" and row["request"]["body"] == {"text": text}}
    rows = [row for row in data if row["request_id"] in ids]
    return rows if len([row for row in rows if row["operation"] == "chat"]) >= 2 else []


def test_the_project_request_is_a_span_under_the_tool_call() -> None:
    collector = Collector()
    with serve(collector.app) as traces, run_gateway(CONFIG, phoenix_collector_endpoint=traces) as url:
        session_run(url, DEV_KEY, [(DEMO, {"text": TEXT})])
        spans = _until(lambda: _spans_named(collector, "mcp sluice", "POST /mcp"))
    [tool] = [span for span in spans if span.name == "mcp sluice"]
    children = [span for span in spans if span.parent_span_id == tool.span_id]
    assert children and all(span.trace_id == tool.trace_id for span in children)
