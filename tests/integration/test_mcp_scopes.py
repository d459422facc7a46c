"""The `mcp` scope of managed keys (set through /admin/keys) and of JWTs, seen through the official `mcp` client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import types

from sluice.keys.jwt import mcp_granted
from sluice.keys.options import JwtConfig, JwtScopes
from sluice.mcp.options import McpScope
from tests.conftest import run_gateway
from tests.integration.test_mcp import mcp_session, text_of, weather_app
from tests.servers import serve

ADMIN = "sk-admin-mcp-scopes"
CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{auto_migrate: true, stdout: false}}
mcp_servers:
  weather: {{url: "{upstream}/mcp", headers: {{Authorization: "Bearer upstream-secret"}}}}
"""
OWN = ["list_models", "chat"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('keys')}/sluice.db"
    settings: dict[str, Any] = {"admin_key": ADMIN, "database_url": database,
                                "key_pepper": "pepper-for-the-mcp-scope-tests"}
    with serve(weather_app(seen)) as upstream, run_gateway(CONFIG.format(upstream=upstream), **settings) as url:
        yield url, seen


def admin(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


def create_key(url: str, **settings: Any) -> dict[str, Any]:
    reply = admin(url, "POST", "/admin/keys", {"name": "mcp-test", **settings})
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


def listed_and_called(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]
                      ) -> tuple[list[str], list[types.CallToolResult]]:
    async def scenario() -> tuple[list[str], list[types.CallToolResult]]:
        async with mcp_session(url + "/mcp", key) as (session, _):
            names = [tool.name for tool in (await session.list_tools()).tools]
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
            return names, results

    return asyncio.run(scenario())


def test_a_managed_key_with_an_mcp_allow_list_lists_and_calls_only_the_allowed_tools(
        gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = gateway
    created = create_key(url, mcp={"allow": ["weather__*"], "deny": ["weather__delete_*"]})
    assert created["mcp"] == {"allow": ["weather__*"], "deny": ["weather__delete_*"]}
    assert admin(url, "GET", f"/admin/keys/{created['id']}").json()["mcp"] == created["mcp"]

    names, (forecast, deleted) = listed_and_called(url, created["key"], [
        ("weather__forecast", {"city": "Oslo"}), ("weather__delete_city", {"city": "Oslo"})])
    assert names == [*OWN, "weather__forecast"]
    assert not forecast.isError and text_of(forecast) == "sunny in Oslo"
    assert deleted.isError and "not permitted" in text_of(deleted)
    assert {"tool-called": "delete_city"} not in seen


def test_a_managed_key_without_the_scope_gets_the_gateways_own_tools_only(
        gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway
    created = create_key(url)
    assert created["mcp"] is None
    names, (refused,) = listed_and_called(url, created["key"], [("weather__forecast", {"city": "Oslo"})])
    assert names == OWN
    assert refused.isError and "no 'mcp' scope" in text_of(refused)


def test_patch_sets_and_removes_the_scope(gateway: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = gateway
    created = create_key(url)
    patched = admin(url, "PATCH", f"/admin/keys/{created['id']}", {"mcp": {"allow": ["weather__forecast"]}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["mcp"] == {"allow": ["weather__forecast"], "deny": []}
    names, _ = listed_and_called(url, created["key"], [])
    assert names == [*OWN, "weather__forecast"]
    audit = admin(url, "GET", "/admin/audit?action=key.update").json()
    assert {"mcp": {"allow": ["weather__forecast"], "deny": []}} in [event["details"] for event in audit["data"]]

    removed = admin(url, "PATCH", f"/admin/keys/{created['id']}", {"mcp": None})
    assert removed.status_code == 200 and removed.json()["mcp"] is None
    names, _ = listed_and_called(url, created["key"], [])
    assert names == OWN


@pytest.mark.parametrize("scope", [{"allow": ["x"], "extra": 1}, {"allow": [""]}, {"allow": "weather__*"}])
def test_an_invalid_scope_is_a_400(gateway: tuple[str, list[dict[str, str]]], scope: dict[str, Any]) -> None:
    url, _ = gateway
    reply = admin(url, "POST", "/admin/keys", {"name": "bad", "mcp": scope})
    assert reply.status_code == 400, reply.text


def jwt_config(**scopes: Any) -> JwtConfig:
    return JwtConfig(issuer="https://issuer", audience="sluice", jwks_url="https://issuer/jwks",
                     scopes=JwtScopes(**scopes))


@pytest.mark.parametrize(("scopes", "claims", "expected"), [
    ({}, {"scope": "models:mock openid"}, None),
    ({}, {"scope": "mcp:weather__* mcp:files__read"}, McpScope(allow=("weather__*", "files__read"))),
    ({"mcp": "mcp"}, {"mcp": ["weather__*"]}, McpScope(allow=("weather__*",))),
    ({"mcp": "mcp"}, {"mcp": {"allow": ["weather__*"], "deny": ["weather__delete_*"]}},
     McpScope(allow=("weather__*",), deny=("weather__delete_*",))),
    ({"mcp": "mcp", "unlisted": "all"}, {"mcp": {"deny": ["weather__*"]}}, None),
])
def test_jwt_claims_grant_the_mcp_scope(scopes: dict[str, Any], claims: dict[str, Any],
                                        expected: McpScope | None) -> None:
    """Fail closed: a token that grants no allow pattern has no `mcp` scope, whatever `unlisted` says."""
    assert mcp_granted(claims, jwt_config(**scopes)) == expected
