"""Active health checks against real loopback upstreams whose health endpoint the tests flip: a failing check takes
a deployment out (traffic goes to the other one, the failing upstream sees only probes), a passing one brings it
back; `/health/ready`, `/admin/health` and the metrics say so; with checks off nothing is probed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sluice import readiness
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.tcp_proxy import TcpProxy
from tests.integration.conftest import needs_postgres
from tests.limits_support import REDIS_ENV, needs_redis
from tests.servers import free_port, serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
ADMIN_KEY = "sk-admin-health"
HELLO = [{"role": "user", "content": "hello"}]
FAST_CHECK = "{interval_seconds: 0.2, timeout_seconds: 0.3}"


def upstream() -> Starlette:
    """An OpenAI-compatible upstream whose `GET /v1/models` answers `state.health` (a status, or "hang")."""

    async def models(request: Request) -> Response:
        request.app.state.probes.append(dict(request.headers))
        health = request.app.state.health
        if health == "hang":
            await asyncio.sleep(1)
        return JSONResponse({"object": "list", "data": []}, status_code=200 if health == "hang" else health)

    async def chat(request: Request) -> Response:
        body = await request.json()
        request.app.state.chats += 1
        if request.app.state.chat_status != 200:
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error", "param": None,
                                           "code": None}}, status_code=request.app.state.chat_status)
        return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hi"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = Starlette(routes=[Route("/v1/models", models, methods=["GET", "HEAD"]),
                            Route("/v1/chat/completions", chat, methods=["POST"])])
    app.state.health, app.state.probes, app.state.chats, app.state.chat_status = 200, [], 0, 200
    return app


@pytest.fixture
def upstreams() -> Iterator[tuple[Starlette, Starlette]]:
    first, second = upstream(), upstream()
    with serve(first) as one, serve(second) as two:
        first.state.url, second.state.url = one, two
        yield first, second


def provider(name: str, url: str, health_check: str | None = FAST_CHECK) -> str:
    check = f"\n    health_check: {health_check}" if health_check is not None else ""
    return f"""
  {name}:
    type: openai
    base_url: "{url}/v1"
    api_key: upstream-key-{name}
    timeout: {{connect: 1, read: 2}}
    retries: {{attempts: 0}}{check}"""


@contextlib.contextmanager
def gateway(config: str, **settings: Any) -> Iterator[httpx.Client]:
    with run_gateway(config + "\nrequest_log: {enabled: false}\nkeys: {managed: false}\n", admin_key=ADMIN_KEY,
                     **settings) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        yield client


def chat(client: httpx.Client, model: str = "gpt") -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO})


def admin_health(client: httpx.Client) -> dict[str, Any]:
    reply = client.get("/admin/health", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def deployment(report: dict[str, Any], model: str, id: str) -> dict[str, Any]:
    for entry in report["models"]:
        if entry["name"] == model:
            for found in entry["deployments"]:
                if found["id"] == id:
                    return dict(found)
    raise AssertionError(f"no deployment {id} of {model} in {report}")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def metric(client: httpx.Client, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@pytest.fixture
def pooled(upstreams: tuple[Starlette, Starlette]) -> Iterator[httpx.Client]:
    """`gpt` on a then b (round-robin), both providers checked every 0.2 s; `lone` on a only."""
    first, second = upstreams
    with gateway("providers:" + provider("a", first.state.url) + provider("b", second.state.url) + """
models:
  - name: gpt
    strategy: round_robin
    deployments: [{provider: a, model: gpt-a}, {provider: b, model: gpt-b}]
  - {name: lone, provider: a, model: gpt-a}
""") as client:
        yield client


def test_a_failing_check_takes_the_deployment_out_and_a_passing_one_brings_it_back(
        upstreams: tuple[Starlette, Starlette], pooled: httpx.Client) -> None:
    first, second = upstreams
    wait_until(lambda: len(first.state.probes) >= 1 and len(second.state.probes) >= 1)
    assert first.state.probes[0]["authorization"] == "Bearer upstream-key-a"  # the provider's credentials
    time.sleep(1.0)
    # `gpt` and `lone` share a's probe: as many probes as b's (one model), not twice as many
    assert abs(len(first.state.probes) - len(second.state.probes)) <= 1, (first.state.probes, second.state.probes)
    first.state.health = 503
    wait_until(lambda: not deployment(admin_health(pooled), "gpt", "a/gpt-a")["healthy"])
    chats = first.state.chats
    replies = [chat(pooled) for _ in range(6)]
    assert [reply.status_code for reply in replies] == [200] * 6
    assert {reply.headers["x-sluice-deployment"] for reply in replies} == {"b/gpt-b"}
    assert first.state.chats == chats  # the failing upstream saw only probes
    assert metric(pooled, "sluice_deployment_healthy", model="gpt", deployment="a/gpt-a") == 0
    assert metric(pooled, "sluice_deployment_healthy", model="gpt", deployment="b/gpt-b") == 1
    assert metric(pooled, "sluice_health_check_status", provider="a", path="/models") == 0
    assert (metric(pooled, "sluice_health_checks_total", provider="a", path="/models", result="unexpected_status")
            or 0) >= 1

    first.state.health = 200
    wait_until(lambda: deployment(admin_health(pooled), "gpt", "a/gpt-a")["healthy"])
    replies = [chat(pooled) for _ in range(4)]
    assert {reply.headers["x-sluice-deployment"] for reply in replies} == {"a/gpt-a", "b/gpt-b"}
    assert first.state.chats == chats + 2
    assert metric(pooled, "sluice_deployment_healthy", model="gpt", deployment="a/gpt-a") == 1


def test_ready_answers_503_while_no_model_can_serve_then_200(upstreams: tuple[Starlette, Starlette]) -> None:
    first, _ = upstreams
    with gateway("providers:" + provider("a", first.state.url) + """
models:
  - {name: lone, provider: a, model: gpt-a}
""") as client:
        ready = client.get("/health/ready", headers={})
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert ready.json()["models"] == {"total": 1, "serving": 1}
        first.state.health = 503
        wait_until(lambda: client.get("/health/ready").status_code == 503)
        body = client.get("/health/ready").json()
        assert body["status"] == "not_ready" and body["models"] == {"total": 1, "serving": 0}
        assert "no model has a usable deployment" in body["reasons"][0]
        started = time.perf_counter()
        refused = chat(client, "lone")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_available_deployment"
        assert time.perf_counter() - started < 0.2  # at once, not after a timeout
        assert first.state.chats == 0
        assert httpx.get(str(client.base_url) + "/health").status_code == 200  # liveness stays cheap and up
        first.state.health = 200
        wait_until(lambda: client.get("/health/ready").status_code == 200)
        assert chat(client, "lone").status_code == 200


def test_admin_health_shows_each_deployment_and_checks_on_demand(upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    slow = "{interval_seconds: 60, timeout_seconds: 0.3, expected_status: [200, 204]}"
    with gateway("providers:" + provider("a", first.state.url, slow) +
                          provider("b", second.state.url, None) + """
models:
  - name: gpt
    deployments: [{provider: a, model: gpt-a}, {provider: b, model: gpt-b}]
""") as client:
        wait_until(lambda: deployment(admin_health(client), "gpt", "a/gpt-a")["last_check"] is not None)
        assert chat(client).status_code == 200
        first.state.health = 500
        checked = client.post("/admin/health/check", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert checked.status_code == 200, checked.text
        a = deployment(checked.json(), "gpt", "a/gpt-a")
        assert a["healthy"] is False and a["usable"] is False and a["health_check"] == "GET /models"
        assert a["last_check"]["status"] == 500 and a["last_check"]["result"] == "unexpected_status"
        assert a["last_check"]["error"] == "answered HTTP 500 (expected 200, 204)"
        assert a["last_check"]["duration_ms"] > 0 and a["breaker"] == {"state": "closed", "retry_in_seconds": 0.0}
        b = deployment(checked.json(), "gpt", "b/gpt-b")
        assert b["healthy"] is True and b["health_check"] is None and b["last_check"] is None
        assert b["in_flight"] == 0 and b["last_error"] is None
        assert {a["latency_ms"] is None, b["latency_ms"] is None} == {True, False}  # one answered the chat
        assert checked.json()["status"] == "ready" and checked.json()["database"] == {"state": "unused", "error": None}
        assert len(second.state.probes) == 0
        assert client.get("/admin/health").status_code == 403  # a plain key is not an admin
        assert "upstream-key" not in checked.text


def test_ready_answers_503_while_every_breaker_is_open(upstreams: tuple[Starlette, Starlette]) -> None:
    first, _ = upstreams
    config = "providers:" + provider("a", first.state.url, None) + """
    breaker: {failure_threshold: 1, open_seconds: 30}
models:
  - {name: lone, provider: a, model: gpt-a}
"""
    with gateway(config) as client:
        assert client.get("/health/ready").status_code == 200
        first.state.chat_status = 500
        assert chat(client, "lone").status_code == 500
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "circuit breaker open" in ready.json()["reasons"][0], ready.text
        lone = deployment(admin_health(client), "lone", "a/gpt-a")
        assert lone["healthy"] is True and lone["usable"] is False and lone["last_error"] == "overloaded"
        assert lone["breaker"]["state"] == "open" and 25 < lone["breaker"]["retry_in_seconds"] <= 30
        assert first.state.probes == []


def test_a_check_that_times_out_or_cannot_connect_takes_the_deployment_out(
        upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    dead = f"http://127.0.0.1:{free_port()}"
    with gateway("providers:" + provider("a", first.state.url) + provider("gone", dead) + """
models:
  - {name: slow, provider: a, model: gpt-a}
  - {name: dead, provider: gone, model: gpt-x}
""") as client:
        first.state.health = "hang"
        wait_until(lambda: not deployment(admin_health(client), "slow", "a/gpt-a")["healthy"])
        report = admin_health(client)
        assert deployment(report, "slow", "a/gpt-a")["last_check"]["result"] == "timeout"
        assert deployment(report, "dead", "gone/gpt-x")["last_check"]["result"] == "unreachable"
        assert deployment(report, "dead", "gone/gpt-x")["healthy"] is False
        assert client.get("/health/ready").status_code == 503


def test_with_checks_off_nothing_is_probed(upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    with gateway("providers:" + provider("a", first.state.url, None) +
                          provider("b", second.state.url, FAST_CHECK) + """
models:
  - name: gpt
    deployments: [{provider: a, model: gpt-a}, {provider: b, model: gpt-b, health_check: false}]
""") as client:
        time.sleep(0.6)
        assert first.state.probes == [] and second.state.probes == []
        assert client.get("/health/ready").status_code == 200
        assert metric(client, "sluice_deployment_healthy", model="gpt", deployment="a/gpt-a") == 1


@needs_postgres
def test_ready_answers_503_while_the_database_is_down(upstreams: tuple[Starlette, Starlette],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The request log's database behind a proxy the test takes down: cached answers between pings."""
    from sqlalchemy.engine import make_url

    monkeypatch.setattr(readiness, "DATABASE_TTL_SECONDS", 0.5)
    target = make_url(os.environ["SLUICE_TEST_POSTGRES_URL"])
    loop = asyncio.new_event_loop()
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    loop.run_until_complete(proxy.up())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    first, _ = upstreams
    config = "providers:" + provider("a", first.state.url, None) + f"""
models:
  - {{name: lone, provider: a, model: gpt-a}}
request_log: {{writer: inline, database_url: "{url}"}}
keys: {{managed: false}}
"""
    try:
        with run_gateway(config) as base, httpx.Client(base_url=base, timeout=10) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 200 and ready.json()["database"] == "up", ready.text
            asyncio.run_coroutine_threadsafe(proxy.down(), loop).result(5)
            assert client.get("/health/ready").status_code == 200  # the answer of 0.5 s ago, no query per probe
            wait_until(lambda: client.get("/health/ready").status_code == 503)
            body = client.get("/health/ready").json()
            assert body["database"] == "down" and "database" in body["reasons"][0]
            assert url not in client.get("/health/ready").text
            asyncio.run_coroutine_threadsafe(proxy.up(), loop).result(5)
            wait_until(lambda: client.get("/health/ready").status_code == 200)
    finally:
        asyncio.run_coroutine_threadsafe(proxy.down(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)


@needs_redis
@pytest.mark.parametrize("fail", ["open", "closed"])
def test_ready_says_when_redis_is_down(upstreams: tuple[Starlette, Starlette], monkeypatch: pytest.MonkeyPatch,
                                       fail: str) -> None:
    """Redis (SLUICE_REDIS_URL) behind a proxy the test takes down: limits that fail open leave the gateway ready
    but `degraded` says what is lost; limits that fail closed make it not ready. Chat keeps working when open."""
    from urllib.parse import urlsplit

    monkeypatch.setattr(readiness, "DATABASE_TTL_SECONDS", 0.3)
    target = urlsplit(os.environ[REDIS_ENV])
    loop = asyncio.new_event_loop()
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    loop.run_until_complete(proxy.up())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    first, _ = upstreams
    config = "providers:" + provider("a", first.state.url, None) + f"""
models:
  - {{name: lone, provider: a, model: gpt-a}}
request_log: {{enabled: false}}
keys: {{managed: false}}
limits: {{on_backend_failure: {fail}, redis_prefix: "ready-{fail}-{time.time_ns()}:",
          default_key: {{requests_per_minute: 100000}}}}
"""
    try:
        with run_gateway(config, redis_url=f"redis://127.0.0.1:{proxy.port}/0") as base, \
                httpx.Client(base_url=base, timeout=10) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 200 and ready.json()["redis"] == "up", ready.text
            assert ready.json()["degraded"] == []
            asyncio.run_coroutine_threadsafe(proxy.down(), loop).result(5)
            if fail == "open":
                wait_until(lambda: client.get("/health/ready").json()["redis"] == "down")
                body = client.get("/health/ready")
                assert body.status_code == 200 and "limits are not enforced" in body.json()["degraded"][0]
                chat = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                                   json={"model": "lone", "messages": [{"role": "user", "content": "hi"}]})
                assert chat.status_code == 200, chat.text
            else:
                wait_until(lambda: client.get("/health/ready").status_code == 503)
                body = client.get("/health/ready")
                assert body.json()["redis"] == "down" and "fail closed" in body.json()["reasons"][0]
            assert str(proxy.port) not in client.get("/health/ready").text
            asyncio.run_coroutine_threadsafe(proxy.up(), loop).result(5)
            wait_until(lambda: client.get("/health/ready").json()["redis"] == "up")
    finally:
        asyncio.run_coroutine_threadsafe(proxy.down(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
