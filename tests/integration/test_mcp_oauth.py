"""OAuth client credentials for an upstream MCP server: a loopback token endpoint and a FastMCP upstream that checks
the bearer, through the gateway with the official `mcp` client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from mcp import types
from mcp.server.fastmcp import FastMCP
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sluice.config import ConfigError, parse_config
from tests.conftest import run_gateway
from tests.integration.test_mcp import mcp_session, text_of
from tests.servers import serve

ADMIN = "sk-admin-mcp-oauth"
CALLER = "sk-caller-of-the-oauth-upstream"
SECRET = "client-secret-never-logged"
CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{flush_interval_seconds: 0.05}}
mcp_servers:
  secured:
    url: "{upstream}/mcp"
    oauth: {{token_url: "{issuer}/token", client_id: sluice-gw, client_secret: {secret}, scope: "tools:call"{more}}}
static_keys:
  - {{key: {caller}, name: oauth-user, mcp: {{allow: ["secured__*"]}}}}
"""


@dataclass
class Issuer:
    """The authorization server and what the upstream accepts: each grant issues `tok-N`; `accepted` is the set
    of tokens the upstream takes (a token left out of it is refused with 401, as if revoked)."""

    expires_in: float | None = 3600
    status: int = 200
    grants: list[dict[str, Any]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    accept_new: bool = True
    bearers: list[str] = field(default_factory=list)

    def token_app(self) -> Starlette:
        async def token(request: Request) -> JSONResponse:
            form = {name: values[0] for name, values in parse_qs((await request.body()).decode()).items()}
            self.grants.append({"content-type": request.headers.get("content-type"),
                                "authorization": request.headers.get("authorization"), **form})
            if self.status != 200:
                return JSONResponse({"error": "invalid_client", "error_description": SECRET}, self.status)
            issued = f"tok-{len(self.grants)}"
            if self.accept_new:
                self.accepted.add(issued)
            reply: dict[str, Any] = {"access_token": issued, "token_type": "Bearer"}
            if self.expires_in is not None:
                reply["expires_in"] = self.expires_in
            return JSONResponse(reply)

        return Starlette(routes=[Route("/token", token, methods=["POST"])])

    def upstream_app(self) -> Any:
        server = FastMCP("secured", stateless_http=True, json_response=True)

        @server.tool()
        def whoami() -> str:
            """Answers only past the bearer check."""
            return "authorized"

        app = server.streamable_http_app()

        async def checking(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                bearer = headers.get("authorization", "").removeprefix("Bearer ")
                self.bearers.append(bearer)
                if bearer not in self.accepted:
                    await JSONResponse({"error": "invalid_token"}, 401)(scope, receive, send)
                    return
            await app(scope, receive, send)

        return checking


@contextlib.contextmanager
def gateway(issuer: Issuer, more: str = "") -> Iterator[str]:
    with serve(issuer.token_app()) as token_url, serve(issuer.upstream_app()) as upstream:
        config = CONFIG.format(upstream=upstream, issuer=token_url, secret=SECRET, caller=CALLER, more=more)
        with run_gateway(config, admin_key=ADMIN) as url:
            yield url


def calls(url: str, count: int, pause: float = 0.0) -> list[types.CallToolResult]:
    async def scenario() -> list[types.CallToolResult]:
        results = []
        for index in range(count):
            if index and pause:
                await asyncio.sleep(pause)
            async with mcp_session(url + "/mcp", CALLER) as (session, _):
                results.append(await session.call_tool("secured__whoami", {}))
        return results

    return asyncio.run(scenario())


def test_the_token_is_fetched_with_a_form_encoded_grant_and_sent_as_the_bearer(
        capfd: pytest.CaptureFixture[str]) -> None:
    issuer = Issuer()
    with gateway(issuer) as url:
        [result] = calls(url, 1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            logs = admin.get("/admin/logs", params={"include_bodies": "true"}).text
    assert not result.isError and text_of(result) == "authorized"
    [grant] = issuer.grants
    assert grant == {"content-type": "application/x-www-form-urlencoded", "authorization": None,
                     "grant_type": "client_credentials", "client_id": "sluice-gw", "client_secret": SECRET,
                     "scope": "tools:call"}
    assert set(issuer.bearers) == {"tok-1"}  # every upstream request, never the caller's key
    printed = capfd.readouterr()
    for secret in (SECRET, "tok-1"):
        assert secret not in printed.out + printed.err and secret not in logs


def test_client_secret_basic_sends_the_credentials_as_http_basic() -> None:
    issuer = Issuer()
    with gateway(issuer, more=", client_auth: client_secret_basic") as url:
        [result] = calls(url, 1)
    assert not result.isError
    [grant] = issuer.grants
    expected = "Basic " + base64.b64encode(f"sluice-gw:{SECRET}".encode()).decode()
    assert grant["authorization"] == expected and "client_secret" not in grant


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    issuer = Issuer(expires_in=3600)
    with gateway(issuer) as url:
        assert not any(result.isError for result in calls(url, 3))
    assert len(issuer.grants) == 1

    short = Issuer(expires_in=2)  # renewed at nine tenths of its lifetime: after 1.8 s
    with gateway(short) as url:
        results = calls(url, 2, pause=2.2)
    assert not any(result.isError for result in results)
    assert len(short.grants) >= 2 and short.bearers[0] == "tok-1" and short.bearers[-1] != "tok-1"


def test_a_401_fetches_a_new_token_once_and_the_request_is_sent_again() -> None:
    issuer = Issuer()
    with gateway(issuer) as url:
        calls(url, 1)
        issuer.accepted.clear()  # tok-1 revoked at the upstream before it expires
        [result] = calls(url, 1)
    assert not result.isError and text_of(result) == "authorized"
    assert len(issuer.grants) == 2 and issuer.bearers[-1] == "tok-2"


def test_an_upstream_that_refuses_every_token_fails_after_one_new_token() -> None:
    """Two upstream requests (the listing behind `initialize`'s instructions, then the call), each sent twice: with
    the token it had, then once with a new one; then the call is an error result, not a loop."""
    issuer = Issuer(accept_new=False)
    with gateway(issuer) as url:
        [result] = calls(url, 1)
    assert result.isError and "401" in text_of(result) and "secured" in text_of(result)
    assert issuer.bearers == ["tok-1", "tok-2", "tok-2", "tok-3"] and len(issuer.grants) == 3


def test_a_refusing_token_endpoint_is_an_error_result_without_the_secret() -> None:
    issuer = Issuer(status=401)
    with gateway(issuer) as url:
        [result] = calls(url, 1)
    assert result.isError
    assert "OAuth token endpoint answered 401 (invalid_client)" in text_of(result)
    assert SECRET not in text_of(result) and issuer.bearers == []


def test_oauth_is_for_http_servers_and_replaces_an_authorization_header() -> None:
    oauth = '{token_url: "http://127.0.0.1:1/token", client_id: a, client_secret: b}'
    for server in (f'{{url: "http://127.0.0.1:1/mcp", headers: {{Authorization: x}}, oauth: {oauth}}}',
                   f"{{command: echo, oauth: {oauth}}}"):
        with pytest.raises(ConfigError):
            parse_config(f"mcp_servers:\n  s: {server}\n", "test.yaml")
    with pytest.raises(ConfigError, match="reserved"):
        parse_config('mcp_servers:\n  project: {url: "http://127.0.0.1:1/mcp"}\n', "test.yaml")
