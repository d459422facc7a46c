"""The service registry while running, against real loopback services: instances added, removed, drained and
restored through /admin/services (stored, surviving a restart, seen by a second gateway), health checks taking an
instance out and back, the aggregated health with a hung service, /admin/routes in match order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.integration.conftest import needs_postgres
from tests.servers import serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
ADMIN = {"Authorization": "Bearer admin-services"}


def instance(name: str) -> Starlette:
    """Answers its name; `/slow` after 1.5 s; `/health` with `state.health` (200 by default, "hang": never)."""

    async def hello(request: Request) -> Response:
        return JSONResponse({"from": name})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.5)
        return JSONResponse({"from": name, "slow": True})

    async def health(request: Request) -> Response:
        if app.state.health == "hang":
            await asyncio.sleep(30)
        return Response(b"ok", status_code=app.state.health)

    app = Starlette(routes=[Route("/health", health), Route("/slow", slow), Route("/{path:path}", hello)])
    app.state.health = 200
    return app


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Starlette]]:
    made = {name: instance(name) for name in ("a", "b", "c", "hung")}
    with serve(made["a"]) as a, serve(made["b"]) as b, serve(made["c"]) as c, serve(made["hung"]) as h:
        for app, url in zip(made.values(), (a, b, c, h), strict=True):
            app.state.url = url
        yield made


def config(apps: dict[str, Starlette], *, check: str = "", hung: bool = False, migrate: bool = False,
           log: bool = True) -> str:
    health_check = f"\n    health_check: {check}" if check else ""
    hung_service = f"""
  hung:
    instances: [{{url: "{apps['hung'].state.url}"}}]
    health_check: {{interval_seconds: 60, timeout_seconds: 0.5}}""" if hung else ""
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
{"request_log: {auto_migrate: true}" if migrate else ""}
{"" if log else "request_log: {enabled: false}"}
services_health_path: /api/health
services:
  users:
    strategy: round_robin
    instances: [{{url: "{apps['a'].state.url}"}}]{health_check}{hung_service}
routes:
  - {{path: "/api/**", service: users, strip_prefix: /api}}
  - {{path: "/api/users/**", service: users, strip_prefix: /api/users}}
  - {{path: "/api/users/me", service: users}}
"""


def add(url: str, instance_url: str) -> httpx.Response:
    return httpx.post(url + "/admin/services/users/instances", headers=ADMIN, json={"url": instance_url})


def who(url: str, n: int = 12) -> Counter[str]:
    return Counter(httpx.get(url + "/api/x", headers=AUTH, timeout=10).json()["from"] for _ in range(n))


def service(url: str) -> dict[str, object]:
    reply = httpx.get(url + "/admin/services/users", headers=ADMIN, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def ids(url: str) -> dict[str, str]:
    return {i["url"]: i["instance_id"] for i in service(url)["instances"]}  # type: ignore[attr-defined]


def test_add_drain_restore_remove_change_traffic_and_survive_a_restart(apps: dict[str, Starlette],
                                                                      tmp_path: Path) -> None:
    a, b = apps["a"].state.url, apps["b"].state.url
    shared = {"data_dir": str(tmp_path), "admin_key": "admin-services"}
    with run_gateway(config(apps), **shared) as url:
        assert who(url) == {"a": 12}
        added = httpx.post(url + "/admin/services/users/instances", headers=ADMIN, json={"url": b, "weight": 1})
        assert added.status_code == 201, added.text
        assert who(url) == {"a": 6, "b": 6}
        id_b = ids(url)[b]

        slow: dict[str, object] = {}

        def call_slow() -> None:  # round robin: of two calls one lands on b; the one on b must finish after the drain
            with httpx.Client(timeout=10) as client:
                for _ in range(2):
                    reply = client.get(url + "/api/slow", headers=AUTH)
                    slow.setdefault("replies", []).append((reply.status_code, reply.json()["from"]))  # type: ignore[attr-defined]

        threads = [threading.Thread(target=call_slow) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while not any(i["url"] == b and i["in_flight"] for i in service(url)["instances"]):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "no request in flight on b"
            time.sleep(0.02)
        drained = httpx.post(f"{url}/admin/services/users/instances/{id_b}/drain", headers=ADMIN)
        assert drained.status_code == 200 and [i["draining"] for i in drained.json()["instances"]] == [False, True]
        assert who(url) == {"a": 12}
        for thread in threads:
            thread.join()
        assert (200, "b") in slow["replies"]  # type: ignore[operator]
    with run_gateway(config(apps), **shared) as url:  # a restart: the added and drained instance is still so
        assert [(i["url"], i["draining"]) for i in service(url)["instances"]] == [(a, False), (b, True)]  # type: ignore[attr-defined]
        assert who(url) == {"a": 12}
        assert httpx.post(f"{url}/admin/services/users/instances/{id_b}/restore", headers=ADMIN).status_code == 200
        assert who(url) == {"a": 6, "b": 6}
        id_a = ids(url)[a]
        assert httpx.delete(f"{url}/admin/services/users/instances/{id_a}", headers=ADMIN).status_code == 200
        assert who(url) == {"b": 12}
        last = httpx.delete(f"{url}/admin/services/users/instances/{id_b}", headers=ADMIN)
        assert last.status_code == 409 and last.json()["error"]["code"] == "last_instance"
        assert httpx.get(url + "/admin/services", headers=AUTH).status_code in (401, 403)
    with run_gateway(config(apps), **shared) as url:
        assert list(ids(url)) == [b]


@needs_postgres
@pytest.mark.anyio
@pytest.mark.parametrize("log", [True, False], ids=["request log on", "request log off"])
async def test_a_second_gateway_on_the_same_database_sees_a_change_within_seconds(
        apps: dict[str, Starlette], postgres_url: str, log: bool) -> None:
    """With the request log off, the changes go through the managed keys' database (the same SLUICE_DATABASE_URL)."""
    c = apps["c"].state.url
    shared = {"admin_key": "admin-services", "database_url": postgres_url}
    if not log:
        with run_gateway(config(apps, migrate=True), **shared):
            pass  # the schema, as `sluice db upgrade` makes it
    text = config(apps, migrate=log, log=log)
    with run_gateway(text, **shared) as first, run_gateway(text, **shared) as second:
        assert who(second, 4) == {"a": 4}
        assert add(first, c).status_code == 201
        started = time.monotonic()
        while who(second, 2) != {"a": 1, "c": 1}:
            assert time.monotonic() - started < 5, "the second gateway did not see the new instance"
            await asyncio.sleep(0.1)


def test_health_checks_take_an_instance_out_and_back(apps: dict[str, Starlette], tmp_path: Path) -> None:
    b = apps["b"].state.url
    check = "{path: /health, interval_seconds: 0.2, timeout_seconds: 1}"
    with run_gateway(config(apps, check=check), data_dir=str(tmp_path), admin_key="admin-services") as url:
        httpx.post(url + "/admin/services/users/instances", headers=ADMIN, json={"url": b})
        try:
            apps["b"].state.health = 503
            deadline = time.monotonic() + 5
            while who(url, 4) != {"a": 4}:
                assert time.monotonic() < deadline, "b was not taken out"
                time.sleep(0.1)
            view = {i["url"]: i for i in service(url)["instances"]}  # type: ignore[attr-defined]
            assert view[b]["healthy"] is False and view[b]["last_check"]["status"] == 503
            metrics = httpx.get(url + "/metrics", headers=AUTH).text
            assert f'sluice_health_check_status{{instance="{b}",path="/health",provider="",service="users"}} 0.0' \
                in metrics
        finally:
            apps["b"].state.health = 200
        checked = httpx.post(url + "/admin/services/users/health-check", headers=ADMIN).json()
        assert all(i["healthy"] for i in checked["instances"])
        assert who(url, 4) == {"a": 2, "b": 2}


def test_aggregated_health_answers_within_the_timeout_of_a_hung_service(apps: dict[str, Starlette]) -> None:
    apps["hung"].state.health = "hang"
    with run_gateway(config(apps, check="{interval_seconds: 60}", hung=True), admin_key="admin-services") as url:
        for path in ("/health/services", "/api/health"):
            started = time.monotonic()
            reply = httpx.get(url + path, timeout=10)
            took = time.monotonic() - started
            assert took < 0.5 + 1.0, took  # the hung service's check times out at 0.5 s (+ slack), not 30 s
            assert reply.status_code in (200, 503), reply.text
            assert reply.json()["services"]["users"]["instances"][0]["check"]["result"] == "healthy"
        body = reply.json()  # by now the hung instance's check has timed out: it is out, the answer says so
        assert reply.status_code == 503 and body["status"] == "down", body
        assert body["services"]["users"]["status"] == "ok"
        assert body["services"]["hung"]["status"] == "down"
        assert body["services"]["hung"]["instances"][0]["check"]["result"] == "timeout"


def test_admin_routes_are_in_match_order(apps: dict[str, Starlette]) -> None:
    with run_gateway(config(apps), admin_key="admin-services") as url:
        routes = httpx.get(url + "/admin/routes", headers=ADMIN).json()["data"]
        assert [(r["rank"], r["index"], r["path"]) for r in routes] == [
            (0, 2, "/api/users/me"), (1, 1, "/api/users/**"), (2, 0, "/api/**")]
        assert httpx.get(url + "/api/users/me", headers=AUTH).json()["from"] == "a"
