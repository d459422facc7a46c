"""Every privileged operation in the live `/openapi.json` (everything under /admin, and anything documented with
the admin scheme) refuses callers without the admin scope: no key and wrong keys get 401, working keys without
the admin scope get 403, always in OpenAI's error shape and with nothing changed; the admin key gets in.

The walk fills each operation's path with real identifiers (a real key, service instance, prompt, log entry)
and sends bodies that would do harm (an admin key created, a key given the admin scope, an instance added), so
a bypass anywhere would show in the state read back afterwards.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import DEV_KEY, run_gateway

ADMIN_KEY = "sk-admin-walk-" + secrets.token_hex(8)
SCOPED = "sk-walk-scoped-" + secrets.token_hex(8)
CONFIG = f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
services:
  svc:
    instances: [{{url: "http://127.0.0.1:9/a"}}, {{url: "http://127.0.0.1:9/b"}}]
routes:
  - {{path: "/svc/**", service: svc}}
static_keys:
  - {{key: "{SCOPED}", name: scoped, models: [mock]}}
prompts:
  - name: greet
    messages: [{{role: user, content: "Hello {{{{who}}}}"}}]
keys: {{cache_ttl_seconds: 0}}
request_log: {{flush_interval_seconds: 0.05}}
"""
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
HARMFUL_BODIES: dict[tuple[str, str], Any] = {
    ("post", "/admin/keys"): {"name": "walk-created", "admin": True},
    ("patch", "/admin/keys/{key_id}"): {"admin": True, "models": None},
    ("post", "/admin/prompts"): {"name": "greet", "messages": [{"role": "user", "content": "pwned {{who}}"}]},
    ("post", "/admin/services/{name}/instances"): {"url": "http://127.0.0.1:9/evil", "weight": 100},
}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path: str
    body: Any

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.template}"


def assert_openai_error(reply: httpx.Response, status: int | tuple[int, ...], label: str) -> None:
    expected = status if isinstance(status, tuple) else (status,)
    assert reply.status_code in expected, (label, reply.status_code, reply.text)
    if reply.request.method == "HEAD":
        return
    body = reply.json()
    assert set(body) == {"error"}, (label, body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, (label, body)
    assert isinstance(error["message"], str) and error["message"], (label, body)
    assert isinstance(error["type"], str) and error["type"], (label, body)
    if reply.status_code == 403:
        assert error["type"] == "permission_error", (label, body)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with run_gateway(CONFIG, keys=(DEV_KEY,), admin_key=ADMIN_KEY) as url:
        yield url


@pytest.fixture(scope="module")
def admin(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def managed(admin: httpx.Client) -> dict[str, str]:
    """Two managed keys: one without the admin scope (a caller of the walk), one the walk aims at."""
    plain = admin.post("/admin/keys", json={"name": "walk-plain"})
    target = admin.post("/admin/keys", json={"name": "walk-target", "models": ["mock"]})
    assert plain.status_code == target.status_code == 201, (plain.text, target.text)
    return {"plain": plain.json()["key"], "target_id": target.json()["id"]}


def _identifiers(admin: httpx.Client, managed: dict[str, str]) -> dict[str, str]:
    """A real value for every path parameter the admin routes take."""
    reply = admin.post("/v1/chat/completions", json={"model": "mock", "messages": [{"role": "user", "content": "x"}]},
                       headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert reply.status_code == 200, reply.text
    for _ in range(200):
        logs = admin.get("/admin/logs").json()["data"]
        if logs:
            break
        time.sleep(0.05)
    instance = admin.get("/admin/services/svc").json()["instances"][0]["instance_id"]
    return {"key_id": managed["target_id"], "name": "svc", "id_": instance, "log_id": logs[0]["log_id"],
            "prompt_name": "greet"}


def privileged_operations(gateway: str, ids: dict[str, str]) -> list[Operation]:
    """Every operation of the live document under /admin, or with the admin scheme in its security."""
    document = httpx.get(gateway + "/openapi.json", timeout=10).json()
    operations = []
    for template, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            schemes = {name for requirement in operation.get("security", []) for name in requirement}
            if not template.startswith("/admin") and not schemes & {"AdminBearer", "AdminAPIKey"}:
                continue
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    name = parameter["name"]
                    value = ids["prompt_name"] if name == "name" and template.startswith("/admin/prompts") else \
                        ids[name]
                    path = path.replace("{" + name + "}", value)
            body = HARMFUL_BODIES.get((method, template), {} if "requestBody" in operation else None)
            operations.append(Operation(method, template, path, body))
    return operations


def state(admin: httpx.Client) -> dict[str, Any]:
    """What a bypass could change: keys (scopes, revocation), prompts, service instances, spend."""
    keys = admin.get("/admin/keys", params={"include_revoked": "true"}).json()["data"]
    services = admin.get("/admin/services").json()["data"]
    return {
        "keys": sorted(tuple(str(k.get(field)) for field in ("id", "name", "admin", "models", "providers", "revoked_at",
                                                               "replaced_by", "updated_at", "expires_at"))
                       for k in keys),
        "prompts": sorted((p["name"], p["version"], str(p["messages"])) for p in admin.get("/admin/prompts").json()
                          ["data"]),
        "services": sorted((s["name"], sorted((i["instance_id"], i["url"], i["weight"], i["draining"])
                                              for i in s["instances"])) for s in services),
    }


def refused_callers(managed: dict[str, str]) -> list[tuple[str, dict[str, str], int]]:
    """(label, headers, expected status): callers who must not get in."""
    wrong_managed = "sk-sluice-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return [
        ("no key", {}, 401),
        ("bare bearer", {"Authorization": "Bearer"}, 401),
        ("token scheme with the admin key", {"Authorization": f"Token {ADMIN_KEY}"}, 401),
        ("basic with the admin key", {"Authorization": "Basic " + base64.b64encode(
            f"admin:{ADMIN_KEY}".encode()).decode()}, 401),
        ("wrong key", {"Authorization": "Bearer sk-not-a-key"}, 401),
        ("admin key with a suffix", {"Authorization": f"Bearer {ADMIN_KEY}x"}, 401),
        ("admin key truncated", {"X-API-Key": ADMIN_KEY[:-1]}, 401),
        ("managed-shaped wrong key", {"Authorization": f"Bearer {wrong_managed}"}, 401),
        ("static key", {"Authorization": f"Bearer {DEV_KEY}"}, 403),
        ("static key as X-API-Key", {"X-API-Key": DEV_KEY}, 403),
        ("scoped static key", {"Authorization": f"Bearer {SCOPED}"}, 403),
        ("managed key", {"Authorization": f"Bearer {managed['plain']}"}, 403),
        ("X-API-Key wins over a wrong bearer", {"Authorization": f"Bearer {ADMIN_KEY}x", "X-API-Key": DEV_KEY}, 403),
        ("X-API-Key wins over the admin bearer", {"Authorization": f"Bearer {ADMIN_KEY}", "X-API-Key": DEV_KEY}, 403),
        ("wrong X-API-Key beside the admin bearer", {"Authorization": f"Bearer {ADMIN_KEY}", "X-API-Key": "nope"},
         401),
    ]


def _send(client: httpx.Client, operation: Operation, headers: dict[str, str]) -> httpx.Response:
    return client.request(operation.method.upper(), operation.path, headers=headers,
                          json=operation.body if operation.body is not None else None)


def test_every_privileged_operation_refuses_callers_without_the_admin_scope(
        gateway: str, admin: httpx.Client, managed: dict[str, str]) -> None:
    ids = _identifiers(admin, managed)
    operations = privileged_operations(gateway, ids)
    walked = {str(operation) for operation in operations}
    assert {"POST /admin/keys", "PATCH /admin/keys/{key_id}", "POST /admin/keys/{key_id}/revoke",
            "POST /admin/keys/{key_id}/rotate", "GET /admin/logs/{log_id}", "POST /admin/prompts",
            "DELETE /admin/services/{name}/instances/{id_}", "GET /admin/spend"} <= walked, walked
    before = state(admin)
    with httpx.Client(base_url=gateway, timeout=10) as client:
        for operation in operations:
            for label, headers, status in refused_callers(managed):
                assert_openai_error(_send(client, operation, headers), status, f"{operation} with {label}")
    assert state(admin) == before

    # The admin key gets through every one of them (and the state read back does show changes).
    order = sorted(operations, key=lambda op: (op.method != "get", "revoke" in op.path or "rotate" in op.path))
    for operation in order:
        reply = _send(admin, operation, {})
        assert reply.status_code not in (401, 403) and reply.status_code < 500, (str(operation), reply.text)
    assert state(admin) != before


@pytest.mark.parametrize("path", ["/admin/keys/", "/admin//keys", "/Admin/keys", "/ADMIN/KEYS", "/admin/./keys",
                                  "/admin/%6Beys", "/%61dmin/keys", "/admin/keys%2F", "/admin/keys;x=1",
                                  "/admin/keys?admin=1", "/admin", "/admin/", "/admin/docs", "/admin/openapi.json"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_path_and_method_variants_never_reach_an_admin_operation(gateway: str, admin: httpx.Client,
                                                                 path: str, method: str) -> None:
    before = state(admin)
    for label, headers in [("no key", {}), ("static key", {"Authorization": f"Bearer {DEV_KEY}"})]:
        status, body = raw_request(gateway, method, path, headers, b'{"name": "variant", "admin": true}')
        assert status in (401, 403, 404, 405), (method, path, label, status, body)
        if method != "HEAD":
            assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}, body
    assert state(admin) == before


def raw_request(base_url: str, method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, bytes]:
    """Send `target` exactly as written: no client-side normalisation of `.`, `//` or escapes."""
    parsed = httpx.URL(base_url)
    connection = http.client.HTTPConnection(parsed.host, parsed.port, timeout=10)
    try:
        connection.request(method, target, body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_keyed_operations_refuse_missing_and_wrong_keys(gateway: str) -> None:
    """The other documented operations that need a key (OpenAI routes, /v1/models, /metrics) answer 401 in OpenAI's
    shape to no key and to a wrong one."""
    document = httpx.get(gateway + "/openapi.json", timeout=10).json()
    filled = {"{model_id}": "mock", "{name}": "mock", "{path}": "models"}
    keyed = [(method, template) for template, item in document["paths"].items() for method in METHODS
             if method in item and item[method].get("security") and not template.startswith("/admin")]
    assert {("post", "/v1/chat/completions"), ("get", "/v1/models"), ("get", "/metrics"),
            ("delete", "/provider/{name}/{path}")} <= set(keyed), keyed
    with httpx.Client(base_url=gateway, timeout=10) as client:
        for method, template in keyed:
            path = template
            for name, value in filled.items():
                path = path.replace(name, value)
            for label, headers in [("no key", {}), ("wrong key", {"Authorization": "Bearer sk-not-a-key"})]:
                reply = client.request(method.upper(), path, headers=headers,
                                       json={} if method == "post" else None)
                assert_openai_error(reply, 401, f"{method} {template} with {label}")
