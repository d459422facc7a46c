"""The services a key may reach as MCP resources at `/mcp`, listed and read through the official `mcp` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import types
from mcp.shared.exceptions import McpError
from pydantic import AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.integration.test_mcp import mcp_session
from tests.servers import serve

ADMIN = "sk-admin-mcp-resources"
USERS_ONLY = "sk-users-only"
CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{enabled: false}}
services:
  users:
    breaker: {{failure_threshold: 3}}
    instances: [{{url: "{users}"}}]
  orders: {{instances: [{{url: "{orders}"}}]}}
routes:
  - {{path: "/api/users/**", service: users, methods: [GET, POST]}}
  - {{path: "/api/orders/**", service: orders}}
static_keys:
  - {{key: {users_only}, name: users-only, services: [users]}}
"""


def named(name: str) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"service": name})

    return Starlette(routes=[Route("/{path:path}", answer)])


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, dict[str, str]]]:
    with serve(named("users")) as users, serve(named("orders")) as orders:
        config = CONFIG.format(users=users, orders=orders, users_only=USERS_ONLY)
        with run_gateway(config, admin_key=ADMIN) as url:
            yield url, {"users": users, "orders": orders}


def listed(url: str, key: str) -> tuple[types.InitializeResult, list[types.Resource]]:
    async def scenario() -> tuple[types.InitializeResult, list[types.Resource]]:
        async with mcp_session(url + "/mcp", key) as (session, initialized):
            return initialized, (await session.list_resources()).resources

    return asyncio.run(scenario())


def read(url: str, key: str, uri: str) -> types.ReadResourceResult:
    async def scenario() -> types.ReadResourceResult:
        async with mcp_session(url + "/mcp", key) as (session, _):
            return await session.read_resource(AnyUrl(uri))

    return asyncio.run(scenario())


def refused(url: str, key: str, uri: str) -> types.ErrorData:
    """The MCP error a read of `uri` is answered with (caught inside the session, which goes on)."""
    async def scenario() -> types.ErrorData:
        async with mcp_session(url + "/mcp", key) as (session, _):
            with pytest.raises(McpError) as raised:
                await session.read_resource(AnyUrl(uri))
            await session.send_ping()  # the session is still usable
            return raised.value.error

    return asyncio.run(scenario())


def test_a_scoped_key_lists_only_the_service_it_may_reach(gateway: tuple[str, dict[str, str]]) -> None:
    url, _ = gateway
    initialized, resources = listed(url, USERS_ONLY)
    assert initialized.capabilities.resources is not None
    assert [(str(resource.uri), resource.name) for resource in resources] == [("sluice://services/users", "users")]
    [users] = resources
    assert users.mimeType == "application/json"
    assert users.description is not None and "/api/users/**" in users.description
    assert "/api/orders" not in users.description


def test_an_unscoped_key_lists_every_service(gateway: tuple[str, dict[str, str]]) -> None:
    url, _ = gateway
    _, resources = listed(url, DEV_KEY)
    assert [resource.name for resource in resources] == ["users", "orders"]


def test_reading_a_service_gives_its_routes_and_what_the_admin_api_shows(
        gateway: tuple[str, dict[str, str]]) -> None:
    url, instances = gateway
    result = read(url, USERS_ONLY, "sluice://services/users")
    [contents] = result.contents
    assert isinstance(contents, types.TextResourceContents)
    assert contents.mimeType == "application/json" and str(contents.uri) == "sluice://services/users"
    document: dict[str, Any] = json.loads(contents.text)
    assert document["routes"] == [{"path": "/api/users/**", "path_regex": None, "methods": ["GET", "POST"],
                                   "websocket": False, "auth": "key"}]
    [instance] = document["instances"]
    assert instance["url"] is None and instance["in_flight"] == 0  # where instances live: for admin keys only
    assert instances["users"] not in contents.text
    assert instance["healthy"] is True and instance["usable"] is True
    assert instance["breaker"] is not None and instance["breaker"]["state"] == "closed"
    admin = httpx.get(url + "/admin/services/users", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert admin.status_code == 200
    shown = admin.json()
    for listed in shown["instances"]:
        for hidden in ("url", "id", "model", "last_error", "last_check"):
            listed[hidden] = None
    assert {name: value for name, value in document.items() if name != "routes"} == shown


def test_a_service_the_key_may_not_reach_is_not_readable(gateway: tuple[str, dict[str, str]]) -> None:
    url, _ = gateway
    error = refused(url, USERS_ONLY, "sluice://services/orders")
    assert "may not use service 'orders'" in error.message
    [contents] = read(url, DEV_KEY, "sluice://services/orders").contents
    assert isinstance(contents, types.TextResourceContents) and json.loads(contents.text)["name"] == "orders"


def test_an_unknown_resource_is_a_clear_error(gateway: tuple[str, dict[str, str]]) -> None:
    url, _ = gateway
    for uri in ("sluice://services/nowhere", "sluice://models/mock"):
        error = refused(url, DEV_KEY, uri)
        assert error.code == -32002 and uri in error.message
