"""Hostile input on a served gateway: JSON bodies that give a key twice, admin settings out of range (on SQLite and
PostgreSQL), and the keyless demo stream under `limits.per_ip`. Each is answered in OpenAI's error shape, never
with a 500 or a 503."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import DEV_KEY, run_gateway

pytestmark = pytest.mark.anyio

ADMIN = "sk-admin-hostile"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: demo, module: sluice.projects.demo}
discover_projects: false
"""
KEYS_CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {auto_migrate: true, stdout: false}
"""
AUTH = {"Authorization": f"Bearer {DEV_KEY}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with run_gateway(CONFIG, admin_key=ADMIN) as url:
        yield url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=10) as http:
        yield http


def assert_duplicate(reply: httpx.Response, key: str) -> None:
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"error": {
        "message": f"The JSON body gives the key '{key}' more than once in the same object; send each key once.",
        "type": "invalid_request_error", "param": key, "code": "duplicate_key"}}


@pytest.mark.parametrize(("path", "body", "key"), [
    ("/v1/chat/completions", b'{"model":"mock","model":"other","messages":[{"role":"user","content":"hi"}]}', "model"),
    ("/v1/chat/completions", b'{"model": "mock", "messages": [{"role": "user", "content": "a", "content": "b"}]}',
     "content"),
    ("/v1/chat/completions", b'{"model":"mock","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",'
     b'"function":{"name":"f","parameters":{"type":"object","type":"array"}}}]}', "type"),
    ("/v1/chat/completions", b'{"model":"mock","messages":[{"role":"user","content":"hi"}],"user":"a","user" :"b"}',
     "user"),
    ("/v1/completions", b'{"model":"mock","prompt":"hi","prompt":"there"}', "prompt"),
    ("/v1/embeddings", b'{"model":"mock","input":"hi",\n"model":"mock"}', "model"),
])
async def test_a_key_given_twice_is_refused_on_the_openai_routes(client: httpx.AsyncClient, path: str, body: bytes,
                                                                 key: str) -> None:
    assert_duplicate(await client.post(path, content=body), key)


@pytest.mark.parametrize("body", [
    # compact, as the SDKs send it (the cheap check), and spaced or pretty (the standard library's reading)
    json.dumps({"model": "mock", "messages": [{"role": "user", "content": 'say "model": "x", twice'}]},
               separators=(",", ":")).encode(),
    json.dumps({"model": "mock", "messages": [{"role": "user", "content": 'say "model": "x", twice'}]}).encode(),
    json.dumps({"model": "mock", "messages": [{"role": "user", "content": "pretty"}], "temperature": 1e-7},
               indent=2).encode(),
])
async def test_bodies_without_a_repeated_key_pass(client: httpx.AsyncClient, body: bytes) -> None:
    reply = await client.post("/v1/chat/completions", content=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == json.loads(body)["messages"][0]["content"]


async def test_the_openai_sdk_is_served(gateway: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=DEV_KEY, max_retries=0)
    reply = await sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "héllo \"you\""}])
    assert reply.choices[0].message.content == "héllo \"you\""
    await sdk.close()


async def test_a_key_given_twice_is_refused_on_the_admin_and_project_routes(client: httpx.AsyncClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    assert_duplicate(await client.post("/admin/prompts", content=b'{"name":"a","name":"b","template":"x"}',
                                       headers=admin), "name")
    assert_duplicate(await client.post("/projects/demo/summary",
                                       content=b'{"text": "one", "text": "two"}'), "text")
    nested = b'{"name":"a","metadata":{"team":"x","team":"y"}}'
    assert_duplicate(await client.post("/admin/keys", content=nested, headers=admin), "team")
    deep = b'{"name": "deep", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    reply = await client.post("/admin/keys", content=deep, headers=admin)
    assert reply.status_code == 400 and reply.json()["error"]["message"] == "The JSON body nests too deeply."
    reply = await client.post("/projects/demo/summary", content=b'{"text": "once"}')
    assert reply.status_code == 200, reply.text


# --- admin input bounds, on both databases -------------------------------------------------------------------------


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    with run_gateway(KEYS_CONFIG, admin_key=ADMIN, database_url=database_url,
                     key_pepper="pepper-for-the-hostile-tests") as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as http:
            yield http


OUT_OF_RANGE: list[tuple[dict[str, Any] | bytes, str, str]] = [
    ({"expires_at": "9999-12-31T23:59:59-05:00"}, "expires_at", "the time is outside the years 1 to 9999 in UTC"),
    ({"expires_at": "0001-01-01T00:00:00+05:00"}, "expires_at", "the time is outside the years 1 to 9999 in UTC"),
    ({"expires_in_days": 1e300}, "expires_in_days", "the time would be past the year 9999"),
    ({"name": "nul\x00name"}, "name", "may not contain a NUL character"),
    ({"metadata": {"team": "a\x00b"}}, "metadata", "may not contain a NUL character"),
    ({"metadata": {"k\x00": 1}}, "metadata", "may not contain a NUL character"),
    ({"models": ["mock\x00"]}, "models", "may not contain a NUL character"),
    ({"models": ["m" * 300]}, "models", "names are at most 256 characters"),
    ({"metadata": {"blob": "x" * 20_000}}, "metadata", "may take at most 16384 bytes as JSON"),
    ({"limits": {"requests_per_minute": 10**30}}, "limits", "requests_per_minute may be at most 1000000000000"),
    ({"limits": {"max_concurrent": -1}}, "limits.max_concurrent", "Input should be greater than or equal to 1"),
    ({"budget": {"usd": -5}}, "budget.usd", "Input should be greater than or equal to 0"),
    (b'{"name": "inf", "budget": {"usd": 1e999}}', "budget", "usd must be a finite amount of at most 1e+12"),
]


def _sent(settings: dict[str, Any] | bytes, name: bool) -> dict[str, Any]:
    if isinstance(settings, bytes):
        return {"content": settings, "headers": {"Content-Type": "application/json"}}
    return {"json": ({"name": "hostile"} | settings) if name else settings}


@pytest.mark.parametrize(("settings", "param", "reason"), OUT_OF_RANGE)
async def test_out_of_range_key_settings_are_400(admin: httpx.AsyncClient, settings: dict[str, Any] | bytes,
                                                 param: str, reason: str) -> None:
    created = await admin.post("/admin/keys", **_sent(settings, name=True))
    assert created.status_code == 400, created.text
    assert created.json()["error"] == {"message": f"Invalid value for '{param}': {reason}.",
                                       "type": "invalid_request_error", "param": param, "code": None}
    if isinstance(settings, dict):
        key = (await admin.post("/admin/keys", json={"name": "plain"})).json()
        updated = await admin.patch(f"/admin/keys/{key['id']}", **_sent(settings, name=False))
        assert updated.status_code == 400, updated.text
        assert updated.json()["error"]["param"] == param
    listed = await admin.get("/admin/keys")
    assert listed.status_code == 200 and all(entry["name"] != "hostile" for entry in listed.json()["data"])


@pytest.mark.parametrize("key_id", ["key_%00abc", "k" * 4000])
async def test_impossible_key_ids_are_404(admin: httpx.AsyncClient, key_id: str) -> None:
    for reply in (await admin.get(f"/admin/keys/{key_id}"), await admin.post(f"/admin/keys/{key_id}/revoke"),
                  await admin.patch(f"/admin/keys/{key_id}", json={"name": "x"}),
                  await admin.post(f"/admin/keys/{key_id}/rotate")):
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "key_not_found"


async def test_the_far_end_of_the_range_is_kept(admin: httpx.AsyncClient) -> None:
    created = await admin.post("/admin/keys", json={"name": "far", "expires_at": "9999-12-31T23:59:59Z",
                                                    "limits": {"requests_per_minute": 10**12}})
    assert created.status_code == 201, created.text
    shown = (await admin.get(f"/admin/keys/{created.json()['id']}")).json()
    assert shown["expires_at"].startswith("9999-12-31T23:59:59") and shown["status"] == "active"
    reply = await admin.post("/v1/chat/completions", headers={"Authorization": f"Bearer {created.json()['key']}"},
                             json={"model": "mock", "messages": [{"role": "user", "content": "far"}]})
    assert reply.status_code == 200, reply.text


# --- the keyless demo stream under limits.per_ip ---------------------------------------------------------------------


DEMO_CONFIG = """
providers:
  mock: {type: mock, chunk_delay_ms: 200, chunks: 5}
models:
  - {name: mock, provider: mock, model: mock-1}
limits:
  per_ip: {requests_per_minute: 3, max_concurrent: 1}
"""


async def test_the_demo_stream_applies_per_ip_limits() -> None:
    with run_gateway(DEMO_CONFIG) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            async with http.stream("GET", "/demo/stream/events", params={"prompt": "a b c d e"}) as first:
                assert first.status_code == 200
                await asyncio.sleep(0.1)
                second = await http.get("/demo/stream/events", params={"prompt": "x"})
                assert second.status_code == 429, second.text
                assert second.json()["error"]["code"] == "rate_limit_exceeded"
                text = "".join([chunk async for chunk in first.aiter_text()])
            assert "data: [DONE]" in text
            third = await http.get("/demo/stream")
            assert third.status_code == 200 and "ratelimit-policy" in third.headers
            fourth = await http.get("/demo/stream/events", params={"prompt": "x"})  # the third of the minute
            assert fourth.status_code == 200
            fifth = await http.get("/demo/stream/events", params={"prompt": "x"})
            assert fifth.status_code == 429 and "retry-after" in fifth.headers


# --- the body read timeout under uvicorn (granian's is in tests/e2e/test_body_timeouts.py) ---------------------------


def test_a_stalled_body_is_408_under_uvicorn_too() -> None:
    import socket
    import time

    config = "providers: {mock: {type: mock}}\nlimits: {body_read_timeout_seconds: 0.5}\n"
    with run_gateway(config) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEV_KEY}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            elapsed = time.monotonic() - started
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert 0.45 < elapsed < 2.5
        assert httpx.get(url + "/health", timeout=5).status_code == 200
