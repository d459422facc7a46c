"""CORS through a real gateway: off by default; a global policy on the built-in routes (preflights answered without
a key, headers on every answer, errors included); a service route's own policy, and preflights that never reach
the service unless its route says `cors: false`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import DEV_KEY, MOCK_CONFIG, run_gateway
from tests.servers import serve

APP = "http://app.example.com:5173"
OTHER = "https://tools.example.org"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}


def preflight_headers(origin: str, method: str = "POST", headers: str = "authorization,content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


def cors_headers(reply: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in reply.headers.items() if name.startswith("access-control-")}


def test_off_by_default() -> None:
    with run_gateway() as url, httpx.Client(base_url=url, timeout=10) as http:
        reply = http.options("/v1/chat/completions", headers=preflight_headers(APP))
        assert reply.status_code == 405 and cors_headers(reply) == {}
        reply = http.get("/v1/models", headers={**AUTH, "Origin": APP})
        assert reply.status_code == 200 and cors_headers(reply) == {} and "vary" not in reply.headers


GLOBAL = MOCK_CONFIG + f"""
request_log: {{enabled: false}}
cors:
  allow_origins: ["{APP}", "https://*.example.org"]
  allow_methods: [GET, POST]
  allow_headers: [authorization, x-api-key]
  expose_headers: [x-request-id]
  max_age_seconds: 120
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[httpx.Client]:
    with run_gateway(GLOBAL) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


def test_a_preflight_is_answered_by_the_gateway_without_a_key(gateway: httpx.Client) -> None:
    for path in ("/v1/chat/completions", "/v1/models", "/admin/keys", "/no/such/path"):
        reply = gateway.options(path, headers=preflight_headers(APP))
        assert reply.status_code == 204, (path, reply.text)
        assert cors_headers(reply) == {
            "access-control-allow-origin": APP,
            "access-control-allow-methods": "GET, POST",
            "access-control-allow-headers": "authorization, content-type",
            "access-control-max-age": "120",
        }
        assert reply.headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        assert reply.content == b""


def test_refused_preflights(gateway: httpx.Client) -> None:
    for headers, reason in ((preflight_headers("https://evil.example.net"), "origin"),
                            (preflight_headers(APP, method="DELETE"), "method 'DELETE'"),
                            (preflight_headers(APP, headers="authorization,x-secret"), "header 'x-secret'")):
        reply = gateway.options("/v1/chat/completions", headers=headers)
        assert reply.status_code == 403 and cors_headers(reply) == {}
        assert reply.json()["error"]["code"] == "cors_preflight_refused"
        assert reason in reply.json()["error"]["message"]


def test_every_answer_to_an_allowed_origin_carries_the_headers(gateway: httpx.Client) -> None:
    expected = {"access-control-allow-origin": OTHER, "access-control-expose-headers": "x-request-id"}
    chat = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    replies = [gateway.get("/v1/models", headers={**AUTH, "Origin": OTHER}),
               gateway.post("/v1/chat/completions", headers={**AUTH, "Origin": OTHER}, json=chat),
               gateway.get("/health", headers={"Origin": OTHER}),
               gateway.get("/v1/models", headers={"Origin": OTHER}),  # no key: the page can read the 401
               gateway.get("/nope", headers={"Origin": OTHER})]
    assert [reply.status_code for reply in replies] == [200, 200, 200, 401, 404]
    for reply in replies:
        assert cors_headers(reply) == expected, reply.request.url
        assert "Origin" in reply.headers["vary"]


def test_a_refused_origin_or_none_gets_only_vary(gateway: httpx.Client) -> None:
    for headers in ({**AUTH, "Origin": "https://example.org"}, AUTH):
        reply = gateway.get("/v1/models", headers=headers)
        assert reply.status_code == 200 and cors_headers(reply) == {}
        assert reply.headers["vary"] == "Origin"


def recording_service() -> Starlette:
    """A service that records every request and answers OPTIONS with CORS headers of its own."""
    seen: list[tuple[str, str]] = []

    async def answer(request: Request) -> Response:
        seen.append((request.method, request.url.path))
        if request.method == "OPTIONS":
            return Response(status_code=200, headers={"access-control-allow-origin": "https://own.example.com",
                                                      "access-control-allow-methods": "PUT"})
        return JSONResponse({"path": request.url.path}, headers={"access-control-allow-origin": "*"})

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "PUT", "OPTIONS"])])
    app.state.seen = seen
    return app


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[httpx.Client, list[Any]]]:
    upstream = recording_service()
    with serve(upstream) as service_url:
        config = GLOBAL + f"""
services:
  things: {{instances: [{{url: "{service_url}"}}]}}
routes:
  - {{path: "/api/**", service: things, auth: public}}
  - path: "/api/shop/**"
    service: things
    auth: public
    cors: {{allow_origins: ["https://shop.example.com"], allow_methods: [PUT], allow_credentials: true}}
  - {{path: "/api/raw/**", service: things, auth: public, cors: false}}
"""
        with run_gateway(config) as url, httpx.Client(base_url=url, timeout=10) as http:
            yield http, upstream.state.seen


def test_a_routes_policy_replaces_the_global_one(service: tuple[httpx.Client, list[Any]]) -> None:
    http, seen = service
    shop = "https://shop.example.com"
    reply = http.options("/api/shop/cart", headers=preflight_headers(shop, method="PUT", headers="x-api-key"))
    assert reply.status_code == 403  # x-api-key is in the global allow-list, not the route's
    reply = http.options("/api/shop/cart", headers=preflight_headers(shop, method="PUT", headers="content-type"))
    assert reply.status_code == 204
    assert cors_headers(reply)["access-control-allow-origin"] == shop
    assert cors_headers(reply)["access-control-allow-credentials"] == "true"
    assert http.options("/api/shop/cart", headers=preflight_headers(APP, method="PUT")).status_code == 403
    # The service's own `*` is replaced by the route's answer.
    reply = http.put("/api/shop/cart", headers={"Origin": shop})
    assert reply.status_code == 200 and cors_headers(reply) == {"access-control-allow-origin": shop,
                                                                "access-control-allow-credentials": "true"}
    reply = http.get("/api/shop/cart", headers={"Origin": APP})
    assert reply.status_code == 200 and cors_headers(reply) == {}
    # Another service route has no policy of its own: the global one.
    reply = http.get("/api/orders", headers={"Origin": APP})
    assert cors_headers(reply) == {"access-control-allow-origin": APP, "access-control-expose-headers": "x-request-id"}
    assert http.options("/api/orders", headers=preflight_headers(APP, method="GET")).status_code == 204
    assert ("OPTIONS", "/api/shop/cart") not in seen and ("OPTIONS", "/api/orders") not in seen


def test_cors_false_leaves_the_route_to_its_service(service: tuple[httpx.Client, list[Any]]) -> None:
    http, seen = service
    reply = http.options("/api/raw/file", headers=preflight_headers(APP, method="PUT"))
    assert reply.status_code == 200
    assert cors_headers(reply) == {"access-control-allow-origin": "https://own.example.com",
                                   "access-control-allow-methods": "PUT"}
    assert ("OPTIONS", "/api/raw/file") in seen
    reply = http.get("/api/raw/file", headers={"Origin": APP})
    assert cors_headers(reply) == {"access-control-allow-origin": "*"} and "vary" not in reply.headers
