"""The service gateway against real loopback services: rules, rewrites, splits, failover between instances,
streamed bodies both ways, identity and forwarding headers, header edits, auth per route, service info."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import free_port, serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}


def echo_service(name: str) -> Starlette:
    """Answers with what it received; `…/big` streams 1 MiB; `…/redirect` answers 302; `…/fail` answers 503."""
    seen: list[dict[str, Any]] = []

    async def echo(request: Request) -> Response:
        body = await request.body()
        entry = {"service": name, "method": request.method, "path": request.url.path, "query": request.url.query,
                 "headers": dict(request.headers), "body_sha256": hashlib.sha256(body).hexdigest(),
                 "body_size": len(body)}
        seen.append(entry)
        return JSONResponse(entry, headers={"x-internal": "secret", "x-from": name})

    async def big(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(16):
                yield b"x" * 65536
        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/elsewhere", status_code=302)

    async def fail(request: Request) -> Response:
        seen.append({"service": name, "path": "/fail"})
        return Response(b"down", status_code=503)

    async def chat_shaped(request: Request) -> Response:  # a service whose JSON happens to look like an LLM's
        return JSONResponse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})

    app = Starlette(routes=[Route("/{rest:path}/big", big), Route("/{rest:path}/redirect", redirect),
                            Route("/{rest:path}/fail", fail), Route("/{rest:path}/usage", chat_shaped),
                            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
    app.state.seen = seen
    return app


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Starlette]]:
    apps = {name: echo_service(name) for name in ("users", "users2", "orders", "canary", "v2")}
    with serve(apps["users"]) as u1, serve(apps["users2"]) as u2, serve(apps["orders"]) as o, \
            serve(apps["canary"]) as c, serve(apps["v2"]) as v2:
        for app, url in zip(apps.values(), (u1, u2, o, c, v2), strict=True):
            app.state.url = url
        yield apps


def config(apps: dict[str, Starlette], dead: str = "") -> str:
    dead_instance = f', {{url: "{dead}"}}' if dead else ""
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{enabled: false}}
services:
  users:
    strategy: round_robin
    instances: [{{url: "{apps['users'].state.url}"}}{dead_instance}]
    timeout: {{connect: 1, read: 5}}
  orders: {{instances: [{{url: "{apps['orders'].state.url}"}}]}}
  canary: {{instances: [{{url: "{apps['canary'].state.url}"}}]}}
  v2: {{instances: [{{url: "{apps['v2'].state.url}"}}]}}
routes:
  - path: /api/users/**
    service: users
    strip_prefix: /api
    request_headers: {{add: {{X-Gateway: sluice}}, remove: [X-Remove-Me]}}
    response_headers: {{remove: [X-Internal], add: {{X-Served-By: sluice}}}}
  - {{path: "/api/orders/**", split: [{{service: orders, weight: 90}}, {{service: canary, weight: 10}}]}}
  - {{path: "/api/orders/**", headers: {{X-Version: "2"}}, service: v2}}
  - {{path: "/public/**", service: orders, auth: public}}
  - path_regex: "/legacy/v[0-9]+/.*"
    service: v2
    rewrite: {{pattern: "^/legacy/(v[0-9]+)/", replacement: "/\\\\1/"}}
"""


@pytest.fixture(scope="module")
def gateway(services: dict[str, Starlette]) -> Iterator[str]:
    with run_gateway(config(services)) as url:
        yield url


def test_a_request_reaches_its_service_rewritten_with_forwarding_and_identity_headers(
        gateway: str, services: dict[str, Starlette]) -> None:
    reply = httpx.get(gateway + "/api/users/7?x=1", timeout=10, headers={
        **AUTH, "X-Remove-Me": "1", "X-Sluice-Key-Id": "forged", "X-Request-ID": "req-svc-1",
        "Connection": "keep-alive, X-Hop", "X-Hop": "hop"})
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    assert (seen["service"], seen["method"], seen["path"], seen["query"]) == ("users", "GET", "/users/7", "x=1")
    sent = seen["headers"]
    assert "authorization" not in sent and "x-remove-me" not in sent and "x-hop" not in sent
    assert sent["x-gateway"] == "sluice" and sent["x-request-id"] == "req-svc-1"
    assert sent["x-sluice-key-id"].startswith("key-") and sent["x-sluice-key-id"] != "forged"
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"].startswith("127.0.0.1:")
    assert "x-internal" not in reply.headers and reply.headers["x-served-by"] == "sluice"
    assert reply.headers["x-request-id"] == "req-svc-1" and float(reply.headers["x-sluice-overhead-ms"]) >= 0
    assert reply.headers["x-sluice-service"] == "users"
    assert reply.headers["x-sluice-instance"] == f"users/{services['users'].state.url}"


def test_the_most_specific_rule_and_the_split(gateway: str) -> None:
    assert httpx.get(gateway + "/api/orders/1", headers={**AUTH, "X-Version": "2"}).json()["service"] == "v2"
    served = Counter(httpx.get(gateway + "/api/orders/1", headers=AUTH).json()["service"] for _ in range(200))
    assert served == {"orders": 180, "canary": 20}
    legacy = httpx.get(gateway + "/legacy/v3/items", headers=AUTH).json()
    assert (legacy["service"], legacy["path"]) == ("v2", "/v3/items")


def test_auth_per_route(gateway: str) -> None:
    assert httpx.get(gateway + "/api/users/1").status_code == 401
    assert httpx.get(gateway + "/api/users/1", headers={"Authorization": "Bearer wrong"}).status_code == 401
    public = httpx.get(gateway + "/public/x", headers={"Authorization": "Bearer for-the-service"})
    assert public.status_code == 200
    assert public.json()["headers"]["authorization"] == "Bearer for-the-service"  # a public route's own business
    assert "x-sluice-key-id" not in public.json()["headers"]


def test_bodies_stream_both_ways(gateway: str) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, more than is ever read first

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 50_000):
            yield payload[start:start + 50_000]

    upload = httpx.post(gateway + "/api/users/upload", content=chunks(), headers=AUTH, timeout=20)
    assert upload.status_code == 200, upload.text
    assert upload.json()["body_size"] == len(payload)
    assert upload.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    with httpx.stream("GET", gateway + "/api/users/big", headers=AUTH, timeout=20) as download:
        assert download.status_code == 200
        assert sum(len(part) for part in download.iter_bytes()) == 16 * 65536


def test_redirects_are_passed_back_not_followed(gateway: str) -> None:
    reply = httpx.get(gateway + "/api/users/redirect", headers=AUTH, follow_redirects=False)
    assert reply.status_code == 302 and reply.headers["location"] == "/elsewhere"


def test_unknown_paths_and_service_info(gateway: str) -> None:
    missing = httpx.get(gateway + "/nothing/here", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    info = httpx.get(gateway + "/").json()
    assert info["name"] == "sluice" and info["routes"] == 5 and "users" in info["services"]


def test_a_dead_instance_is_skipped_for_idempotent_requests(services: dict[str, Starlette]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with run_gateway(config(services, dead=dead)) as url:
        gets = [httpx.get(url + "/api/users/1", headers=AUTH, timeout=10) for _ in range(6)]
        assert [reply.status_code for reply in gets] == [200] * 6
        assert {reply.headers["x-sluice-instance"] for reply in gets} == {f"users/{services['users'].state.url}"}
        text = httpx.get(url + "/metrics", headers=AUTH).text
    assert 'sluice_failovers_total{deployment="users/' + dead in text


def test_a_post_is_never_sent_twice(services: dict[str, Starlette]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config_text = config(services, dead=dead).replace("strategy: round_robin", "strategy: round_robin\n    "
                                                      "breaker: {enabled: false}")
    with run_gateway(config_text) as url:
        codes = Counter(httpx.post(url + "/api/users/new", json={"n": n}, headers=AUTH, timeout=10).status_code
                        for n in range(6))
    assert codes == {200: 3, 502: 3}  # round-robin: every other POST met the dead instance and was not retried


def test_the_matched_route_is_on_the_request_log_row(services: dict[str, Starlette]) -> None:
    admin = "sk-admin-services"
    text = config(services).replace("request_log: {enabled: false}\n", "")
    with run_gateway(text, admin_key=admin) as url:
        reply = httpx.get(url + "/api/users/9", headers=AUTH)
        assert reply.status_code == 200
        entries: list[dict[str, Any]] = []
        for _ in range(100):
            entries = httpx.get(url + "/admin/logs", headers={"Authorization": f"Bearer {admin}"}).json()["data"]
            if entries:
                break
            time.sleep(0.1)
    entry = entries[0]
    assert entry["routing"]["route"] == "/api/users/**"
    assert entry["endpoint"] == "/api/users/9" and entry["operation"] == "service"
    assert entry["provider"]["name"] == "users" and entry["response"]["status_code"] == 200


def test_metrics_count_service_requests_by_route_pattern_not_by_path(gateway: str) -> None:
    for user in range(5):
        assert httpx.get(gateway + f"/api/users/{user}", headers=AUTH).status_code == 200
    text = ""
    for _ in range(50):  # the metrics observer counts every 50 ms
        text = httpx.get(gateway + "/metrics", headers=AUTH).text
        if 'route="/api/users/**"' in text:
            break
        time.sleep(0.1)
    assert 'sluice_requests_total{model="",provider="users",route="/api/users/**",status="200"}' in text
    assert 'route="/api/users/3"' not in text
    # A service's reply is not read for LLM token usage, whatever it says.
    assert httpx.get(gateway + "/api/users/usage", headers=AUTH).json()["usage"]["total_tokens"] == 10
    time.sleep(0.2)  # a scrape counts every finished exchange
    text = httpx.get(gateway + "/metrics", headers=AUTH).text
    assert 'sluice_tokens_total{direction="prompt",model="",provider="users"} 0.0' in text, [
        line for line in text.splitlines() if line.startswith("sluice_tokens_total")]
