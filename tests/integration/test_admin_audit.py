"""The admin API's audit trail through a served gateway: keys, a service instance and a prompt changed, each change
in /admin/audit with its actor, action and target, no secret anywhere; in memory without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import run_gateway
from tests.servers import serve

pytestmark = pytest.mark.anyio
ADMIN = "sk-admin-audit-test"
PEPPER = "pepper-for-the-audit-tests"


def _hello(request: Request) -> Response:
    return JSONResponse({"from": "instance"})


@pytest.fixture(scope="module")
def instance() -> Iterator[str]:
    with serve(Starlette(routes=[Route("/{path:path}", _hello)])) as url:
        yield url


def _config(instance: str, *, database: bool = True) -> str:
    storage = "request_log: {auto_migrate: true, stdout: false}" if database else \
        "request_log: {enabled: false}\nkeys: {managed: false}"
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
{storage}
services:
  users:
    instances: [{{url: "{instance}"}}]
routes:
  - {{path: "/api/**", service: users, strip_prefix: /api}}
"""


@pytest.fixture
async def admin(database_url: str, instance: str) -> AsyncIterator[httpx.AsyncClient]:
    with run_gateway(_config(instance), admin_key=ADMIN, database_url=database_url, key_pepper=PEPPER) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            yield client


async def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code in (200, 201), reply.text
    body: dict[str, Any] = reply.json()
    return body


async def _instance_id(client: httpx.AsyncClient) -> str:
    service = await _ok(await client.get("/admin/services/users"))
    found: str = service["instances"][0]["instance_id"]
    return found


async def _every_event(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """All pages of /admin/audit, two rows at a time."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await _ok(await client.get("/admin/audit", params={**params, "limit": 2,
                                                                  **({"cursor": cursor} if cursor else {})}))
        events += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events


async def test_every_admin_change_is_in_the_trail_without_secrets(admin: httpx.AsyncClient, instance: str) -> None:
    created = await _ok(await admin.post("/admin/keys", json={"name": "app", "metadata": {"team": "a"}}))
    await _ok(await admin.patch(f"/admin/keys/{created['id']}", json={"name": "renamed", "models": ["mock"]}))
    ops = await _ok(await admin.post("/admin/keys", json={"name": "ops", "admin": True}))
    as_ops = {"Authorization": f"Bearer {ops['key']}"}
    await _ok(await admin.post(f"/admin/keys/{created['id']}/revoke", headers=as_ops))
    await _ok(await admin.post(f"/admin/services/users/instances/{await _instance_id(admin)}/drain"))
    await _ok(await admin.post("/admin/prompts", json={"name": "greet",
                                                       "messages": [{"role": "system", "content": "Hi {{who}}"}]}))

    reply = await admin.get("/admin/audit")
    events = (await _ok(reply))["data"]
    seen = [(event["actor"], event["action"], event["target"]) for event in events]
    assert seen == [
        ("admin-key", "prompt.add", "greet@1"),
        ("admin-key", "service.instance.drain", f"users/{instance}"),
        (ops["id"], "key.revoke", created["id"]),
        ("admin-key", "key.create", ops["id"]),
        ("admin-key", "key.update", created["id"]),
        ("admin-key", "key.create", created["id"]),
    ]
    assert events[4]["details"] == {"name": "renamed", "models": ["mock"]}
    assert events[5]["details"]["name"] == "app" and events[5]["details"]["metadata"] == {"team": "a"}
    assert events[1]["details"] == {"draining": True}
    assert all(event["at"].endswith("+00:00") for event in events)
    for secret in (created["key"], ops["key"], ADMIN, created["key"][-16:]):
        assert secret not in reply.text

    assert await _every_event(admin) == events
    assert [event["target"] for event in await _every_event(admin, action="key.create")] == [ops["id"],
                                                                                          created["id"]]
    assert [event["action"] for event in await _every_event(admin, actor=ops["id"])] == ["key.revoke"]
    bad = await admin.get("/admin/audit", params={"cursor": "@@not-base64@@"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"


async def test_rotate_is_recorded_with_the_new_key_id(admin: httpx.AsyncClient) -> None:
    old = await _ok(await admin.post("/admin/keys", json={"name": "to-rotate"}))
    new = await _ok(await admin.post(f"/admin/keys/{old['id']}/rotate", json={"grace_seconds": 30}))
    reply = await admin.get("/admin/audit", params={"action": "key.rotate"})
    [event] = (await _ok(reply))["data"]
    assert event["target"] == old["id"] and event["details"] == {"replaced_by": new["id"], "grace_seconds": 30.0}
    assert new["key"] not in reply.text and old["key"] not in reply.text


async def test_only_admins_read_the_trail(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/admin/audit", headers={"Authorization": ""})).status_code == 401
    plain = await _ok(await admin.post("/admin/keys", json={"name": "plain"}))
    assert (await admin.get("/admin/audit", headers={"Authorization": f"Bearer {plain['key']}"})).status_code == 403


def test_without_a_database_the_trail_is_kept_in_memory(instance: str) -> None:
    with run_gateway(_config(instance, database=False), admin_key=ADMIN) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            instance_id = client.get("/admin/services/users").json()["instances"][0]["instance_id"]
            assert client.post(f"/admin/services/users/instances/{instance_id}/drain").status_code == 200
            assert client.post(f"/admin/services/users/instances/{instance_id}/restore").status_code == 200
            events = client.get("/admin/audit").json()["data"]
    assert [(event["actor"], event["action"], event["details"]) for event in events] == [
        ("admin-key", "service.instance.restore", {"draining": False}),
        ("admin-key", "service.instance.drain", {"draining": True}),
    ]
