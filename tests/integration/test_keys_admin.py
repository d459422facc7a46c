"""Managed keys through the admin API of a served gateway, on SQLite and PostgreSQL: create, use, scope, expire,
update, rotate, revoke, and OpenAI-shaped refusals that never say whether a key exists."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DEV_KEY, run_gateway

pytestmark = pytest.mark.anyio

ADMIN = "sk-admin-keys-test"
PEPPER = "pepper-for-the-key-tests"
CONFIG = """
providers:
  mock: {type: mock}
  other: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1, aliases: [mock-alias]}
  - {name: second, provider: other, model: mock-2}
projects:
  - {name: demo, module: sluice.projects.demo}
discover_projects: false
request_log: {auto_migrate: true, stdout: false}
keys: {cache_ttl_seconds: 5}
"""
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}


@contextlib.contextmanager
def gateway(database_url: str, config: str = CONFIG) -> Iterator[str]:
    with run_gateway(config, admin_key=ADMIN, database_url=database_url, key_pepper=PEPPER) as url:
        yield url


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    with gateway(database_url) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            yield client


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    reply = await client.post("/admin/keys", json={"name": "test", **body})
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


async def chat(client: httpx.AsyncClient, key: str, model: str = "mock") -> httpx.Response:
    return await client.post("/v1/chat/completions", json={**CHAT, "model": model},
                            headers={"Authorization": f"Bearer {key}"})


def assert_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 401
    assert reply.json() == {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                      "param": None, "code": "invalid_api_key"}}


async def test_a_created_key_works_and_is_listed_without_its_secret(admin: httpx.AsyncClient) -> None:
    created = await create(admin, name="team-a", metadata={"team": "a"}, limits={"requests_per_minute": 600})
    key = created["key"]
    assert key.startswith("sk-sluice-") and len(key) == 53
    assert created["id"].startswith("key_") and created["prefix"] == key[:14] and created["status"] == "active"
    assert created["limits"] == {"requests_per_minute": 600, "tokens_per_minute": None, "max_concurrent": None}

    reply = await chat(admin, key)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "hello"
    listed = (await admin.get("/admin/keys")).json()
    assert [entry["id"] for entry in listed["data"]] == [created["id"]]
    shown = (await admin.get(f"/admin/keys/{created['id']}")).json()
    assert shown["metadata"] == {"team": "a"} and shown["name"] == "team-a"
    assert key not in str(listed) and key not in str(shown) and "key" not in shown


async def test_scopes_are_enforced(admin: httpx.AsyncClient) -> None:
    key = (await create(admin, models=["mock"]))["key"]
    assert (await chat(admin, key)).status_code == 200
    refused = await chat(admin, key, "second")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    models = (await admin.get("/v1/models", headers={"Authorization": f"Bearer {key}"})).json()
    assert [model["id"] for model in models["data"]] == ["mock"]

    by_provider = (await create(admin, providers=["other"]))["key"]
    assert (await chat(admin, by_provider, "second")).status_code == 200
    denied = await chat(admin, by_provider, "mock")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"


async def test_admin_scope(admin: httpx.AsyncClient) -> None:
    admin_key = (await create(admin, name="ops", admin=True))["key"]
    plain_key = (await create(admin, name="plain"))["key"]
    as_admin = {"Authorization": f"Bearer {admin_key}"}
    listed = await admin.get("/admin/keys", headers=as_admin)
    assert listed.status_code == 200 and {entry["name"] for entry in listed.json()["data"]} == {"ops", "plain"}
    assert (await admin.post("/admin/keys", json={"name": "made-by-ops"}, headers=as_admin)).status_code == 201
    assert (await admin.get("/admin/logs", headers={"X-API-Key": admin_key})).status_code == 200
    for path in ("/admin/keys", "/admin/logs", "/admin/usage"):
        for key in (plain_key, DEV_KEY):
            denied = await admin.get(path, headers={"Authorization": f"Bearer {key}"})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert_refused(await admin.get("/admin/keys", headers={"Authorization": "Bearer sk-sluice-" + "x" * 43}))
    missing = await admin.get("/admin/keys", headers={"Authorization": ""})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"


async def test_revoke_refuses_at_once_on_this_instance(admin: httpx.AsyncClient) -> None:
    created = await create(admin)
    assert (await chat(admin, created["key"])).status_code == 200
    revoked = (await admin.post(f"/admin/keys/{created['id']}/revoke")).json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert_refused(await chat(admin, created["key"]))
    assert (await admin.get("/admin/keys")).json()["data"] == []
    listed = (await admin.get("/admin/keys", params={"include_revoked": "true"})).json()["data"]
    assert [entry["status"] for entry in listed] == ["revoked"]
    again = (await admin.post(f"/admin/keys/{created['id']}/revoke")).json()
    assert again["revoked_at"] == revoked["revoked_at"]


async def test_an_expired_key_is_refused_like_an_unknown_one(admin: httpx.AsyncClient) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.2)
    created = await create(admin, expires_at=soon.isoformat())
    assert (await chat(admin, created["key"])).status_code == 200  # cached now, but only until it expires
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert_refused(await chat(admin, created["key"]))
    assert (await admin.get(f"/admin/keys/{created['id']}")).json()["status"] == "expired"
    rotated = await admin.post(f"/admin/keys/{created['id']}/rotate")
    assert rotated.status_code == 400 and rotated.json()["error"]["code"] == "key_expired"
    days = await create(admin, expires_in_days=2)
    assert abs(datetime.fromisoformat(days["expires_at"]) - datetime.now(UTC) - timedelta(days=2)) < timedelta(
        minutes=1)


async def test_rotate(admin: httpx.AsyncClient) -> None:
    old = await create(admin, name="rotating", models=["mock"], budget={"usd": 5, "period": "daily"})
    rotated = await admin.post(f"/admin/keys/{old['id']}/rotate")
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["key"] != old["key"] and new["id"] != old["id"]
    assert (new["name"], new["models"], new["budget"]) == ("rotating", ["mock"], {"usd": 5.0, "period": "daily"})
    assert (await chat(admin, new["key"])).status_code == 200
    assert_refused(await chat(admin, old["key"]))
    replaced = (await admin.get(f"/admin/keys/{old['id']}")).json()
    assert replaced["replaced_by"] == new["id"] and replaced["status"] == "revoked"
    again = await admin.post(f"/admin/keys/{old['id']}/rotate")
    assert again.status_code == 400 and again.json()["error"]["code"] == "key_revoked"

    graced = (await admin.post(f"/admin/keys/{new['id']}/rotate", json={"grace_seconds": 60})).json()
    assert (await chat(admin, new["key"])).status_code == 200  # still inside its grace period
    assert (await chat(admin, graced["key"])).status_code == 200


async def test_update(admin: httpx.AsyncClient) -> None:
    created = await create(admin, models=["mock"], limits={"requests_per_minute": 5})
    patched = await admin.patch(f"/admin/keys/{created['id']}",
                                json={"name": "renamed", "models": None, "limits": None, "metadata": {"a": 1}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["models"], body["limits"], body["metadata"]) == ("renamed", None, None, {"a": 1})
    assert (await chat(admin, created["key"], "second")).status_code == 200  # the model scope is gone, at once
    narrowed = await admin.patch(f"/admin/keys/{created['id']}", json={"models": ["second"]})
    assert narrowed.json()["models"] == ["second"]
    assert (await chat(admin, created["key"], "mock")).status_code == 404


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"models": ["gpt-nope"]}, "models"),
    ({"providers": ["nowhere"]}, "providers"),
    ({"projects": ["ghost"]}, "projects"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 3}, "expires_in_days"),
    ({"limits": {"requests_per_minute": 0}}, "limits.requests_per_minute"),
    ({"budget": {"usd": 1, "period": "fortnightly"}}, "budget.period"),
    ({"surprise": True}, "surprise"),
    ({"name": ""}, "name"),
]


async def test_invalid_settings_are_400_naming_the_field(admin: httpx.AsyncClient) -> None:
    for body, param in INVALID:
        reply = await admin.post("/admin/keys", json={"name": "x", **body})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]
    created = await create(admin)
    patched = await admin.patch(f"/admin/keys/{created['id']}", json={"projects": ["ghost"]})
    assert patched.status_code == 400 and patched.json()["error"]["param"] == "projects"
    assert (await admin.get("/admin/keys")).json()["data"][0]["projects"] is None


async def test_unknown_ids_are_404(admin: httpx.AsyncClient) -> None:
    for method, path in (("GET", ""), ("PATCH", ""), ("POST", "/revoke"), ("POST", "/rotate")):
        reply = await admin.request(method, f"/admin/keys/key_0000000000000000{path}",
                                    json={} if method == "PATCH" else None)
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "key_not_found"
    missing = await admin.patch("/admin/keys/key_0000000000000000", json={"name": None})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "name"


MALFORMED: list[str | bytes] = [
    "sk-sluice-", "sk-sluice-short", "sk-sluice-" + "A" * 43, "sk-sluice-" + "A" * 44, "not-a-key", "x" * 5000,
    "Bearer sk-sluice-" + "A" * 43, b"sk-sluice-" + "\u00e9".encode("latin-1") * 43, b"sk-sluice-\xff\xfe",
]


async def test_malformed_and_unknown_keys_are_401(admin: httpx.AsyncClient) -> None:
    for presented in MALFORMED:
        assert_refused(await admin.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": presented}))
        assert_refused(await admin.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": presented}))


def test_swagger_ui_can_authorize_admin_and_api_routes() -> None:
    with run_gateway() as url:
        document = httpx.get(url + "/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["AdminBearer"] == {"type": "http", "scheme": "bearer", "description": schemes["AdminBearer"][
        "description"]} and "admin scope" in schemes["AdminBearer"]["description"]
    assert set(schemes) == {"HTTPBearer", "AdminBearer"}  # one scheme each: X-API-Key is accepted, not offered
    for method, path in (("post", "/admin/keys"), ("get", "/admin/keys"), ("patch", "/admin/keys/{key_id}"),
                         ("post", "/admin/keys/{key_id}/rotate")):
        assert {"AdminBearer": []} in document["paths"][path][method]["security"]
    for path in ("/v1/chat/completions", "/v1/models"):
        security = next(iter(document["paths"][path].values()))["security"]
        assert security == [{"HTTPBearer": []}]


def test_with_managed_keys_off_nothing_touches_a_database(tmp_path: Path) -> None:
    config = "providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: mock-1}\n" \
             "request_log: {enabled: false}\nkeys: {managed: false}\n" \
             "static_keys: [{key: sk-static-admin, name: ops, admin: true}]\n"
    with run_gateway(config, data_dir=str(tmp_path)) as url:
        refused = httpx.post(url + "/v1/chat/completions", json=CHAT,
                             headers={"Authorization": "Bearer sk-sluice-" + "A" * 43})
        off = httpx.get(url + "/admin/keys", headers={"Authorization": "Bearer sk-static-admin"})
        logs = httpx.get(url + "/admin/logs", headers={"X-API-Key": "sk-static-admin"})
        assert logs.json()["error"]["code"] == "request_log_disabled"  # admitted: a static key with the admin scope
        assert httpx.post(url + "/v1/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {DEV_KEY}"}).status_code == 200
    assert_refused(refused)
    assert off.status_code == 404 and off.json()["error"]["code"] == "managed_keys_disabled"
    assert [path.name for path in tmp_path.iterdir()] == ["key-pepper"]  # the static keys' ids come from it
