"""No secret in clear anywhere after real traffic: static, scoped, managed, rotated, admin and wrong keys, and the
provider's key, looked for in `sluice serve`'s stdout and stderr, every row and column of every table of the
request-log database (SQLite and PostgreSQL), every file the gateway wrote, `/metrics`, every reply, and every byte
the upstream received (where the provider's key may appear only in its auth header).

Each scan first finds a planted marker in the same place, so an empty or unread source cannot pass for a clean one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from tests.e2e.test_serve import run_serve
from tests.fakes.openai import Error, Stream, chat_chunk, create_fake_openai
from tests.fakes.tcp_proxy import TcpProxy
from tests.servers import serve

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]


@dataclass
class Received:
    """One request exactly as the upstream's server handed it over: raw path and query, header pairs, body."""

    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)


class RecordingUpstream:
    """ASGI wrapper that keeps every HTTP request its app receives, before the app parses anything."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received: list[Received] = []

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = Received(scope["method"], scope.get("raw_path") or scope["path"].encode(), scope["query_string"],
                         list(scope["headers"]))
        self.received.append(entry)

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                entry.body.extend(message.get("body", b""))
            return message

        await self.app(scope, receiving, send)


def forms(secret: str) -> list[str]:
    """How a secret could show up: whole, its random part alone, its plain SHA-256 (the request log stores only a
    peppered HMAC, never a digest anyone holding the key can recompute), and base64 of it."""
    tail = re.sub(r"^sk-[a-z]+-", "", secret)
    assert len(tail) >= 16, secret
    return [secret, tail, hashlib.sha256(secret.encode()).hexdigest(), base64.b64encode(secret.encode()).decode()]


def found(text: str | bytes, needles: dict[str, str]) -> list[str]:
    """The names of the needles (any of their `forms`) that occur in `text`."""
    haystack = text.decode("latin-1") if isinstance(text, bytes) else text
    return sorted(name for name, secret in needles.items() if any(form in haystack for form in forms(secret)))


def _token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(16)}"


STATIC = _token("sk-static")
SCOPED = _token("sk-scoped")
ADMIN = _token("sk-admin")
PROVIDER = _token("sk-provider")
WRONG = _token("sk-wrong")
WRONG_MANAGED = "sk-sluice-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
PLANTED = "planted" + secrets.token_hex(8)
"""Sent in message text and as a model name: every scan must find it where the traffic put it."""

CONFIG = """
providers:
  up:
    type: openai
    base_url: "{upstream}/v1"
    api_key: "${{SECRETS_TEST_PROVIDER_KEY}}"
    retries: {{attempts: 0}}
    breaker: {{enabled: false}}
  mock: {{type: mock}}
models:
  - {{name: gpt, provider: up, model: gpt-test}}
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: "m-{planted}", provider: mock, model: mock-1}}
static_keys:
  - {{key: "${{SECRETS_TEST_SCOPED_KEY}}", name: scoped, models: [mock], providers: [mock]}}
request_log: {{auto_migrate: true, flush_interval_seconds: 0.05, stdout: true, stdout_bodies: true}}
keys: {{cache_ttl_seconds: 0}}
"""


@pytest.fixture
def upstream() -> Iterator[tuple[RecordingUpstream, Starlette]]:
    fake = create_fake_openai(api_key=PROVIDER)
    recording = RecordingUpstream(fake)
    with serve(recording) as url:
        fake.state.url = url
        yield recording, fake


@dataclass
class Traffic:
    """What one run produced: every reply (status, headers, body) and the keys the admin API handed out."""

    replies: list[tuple[str, int, str]] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)
    metrics: str = ""

    def note(self, label: str, reply: httpx.Response, body: str | None = None) -> None:
        headers = "\n".join(f"{name}: {value}" for name, value in reply.headers.multi_items())
        self.replies.append((label, reply.status_code, headers + "\n\n" + (reply.text if body is None else body)))


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def _drive(url: str, fake: Starlette) -> Traffic:
    """Good and bad calls with every kind of key, failures upstream, a broken stream, passthrough, admin, metrics."""
    traffic = Traffic()
    bearer = {"Authorization": f"Bearer {STATIC}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        created = await client.post("/admin/keys", json={"name": "leaky", "models": ["gpt", "mock"]}, headers=admin)
        assert created.status_code == 201, created.text
        managed = traffic.issued["managed"] = created.json()["key"]

        async def call(label: str, status: int | tuple[int, ...], method: str, path: str, headers: dict[str, str],
                       body: Any = None) -> httpx.Response:
            reply = await client.request(method, path, json=body, headers=headers)
            assert reply.status_code in (status if isinstance(status, tuple) else (status,)), \
                (label, reply.status_code, reply.text)
            traffic.note(label, reply)
            return reply

        async def stream(label: str, headers: dict[str, str], body: Any) -> str:
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
                text = (await reply.aread()).decode()
            assert reply.status_code == 200, (label, text)
            traffic.note(label, reply, text)
            return text

        await call("chat static", 200, "POST", "/v1/chat/completions", bearer, _chat("gpt", f"hi {PLANTED}"))
        assert PLANTED in await stream("stream managed", {"X-API-Key": managed},
                                       _chat("gpt", f"stream {PLANTED}", stream=True))
        fake.state.script.append(Error(500, f"upstream broke {PLANTED}", type="server_error"))
        await call("upstream 500", (500, 502), "POST", "/v1/chat/completions", {"X-API-Key": managed},
                   _chat("gpt", "x"))
        fake.state.script.append(Stream([chat_chunk("par", role="assistant"), chat_chunk("tial")], then_reset=True))
        broken = await stream("stream reset", bearer, _chat("gpt", "cut", stream=True))
        assert "error" in broken
        await call("mock scoped", 200, "POST", "/v1/chat/completions", {"Authorization": f"Bearer {SCOPED}"},
                   _chat("mock", "scoped"))
        await call("planted model", 200, "POST", "/v1/chat/completions", bearer, _chat(f"m-{PLANTED}", "label"))
        await call("embeddings", 200, "POST", "/v1/embeddings", {"X-API-Key": managed},
                   {"model": "gpt", "input": ["a", "b"]})
        await call("unknown model", 404, "POST", "/v1/chat/completions", bearer, _chat(f"no-{PLANTED}", "x"))
        await call("bad body", 400, "POST", "/v1/chat/completions", bearer, {"model": "gpt"})
        for label, headers in [("wrong bearer", {"Authorization": f"Bearer {WRONG}"}),
                               ("wrong x-api-key", {"X-API-Key": WRONG}),
                               ("wrong managed-shaped", {"Authorization": f"Bearer {WRONG_MANAGED}"}),
                               ("provider key as caller", {"Authorization": f"Bearer {PROVIDER}"})]:
            await call(label, 401, "POST", "/v1/chat/completions", headers, _chat("gpt", "x"))
            await call(label + " passthrough", 401, "GET", "/provider/up/models", headers)
        await call("model out of scope", 404, "POST", "/v1/chat/completions",
                   {"Authorization": f"Bearer {SCOPED}"}, _chat("gpt", "x"))
        await call("provider out of scope", 403, "GET", "/provider/up/models", {"Authorization": f"Bearer {SCOPED}"})
        await call("admin refused", 403, "GET", "/admin/keys", {"X-API-Key": managed})
        await call("admin wrong key", 401, "GET", "/admin/logs", {"Authorization": f"Bearer {WRONG}"})
        await call("passthrough query keys", 200, "GET",
                   f"/provider/up/models?key={STATIC}&api_key={managed}&api-key={SCOPED}&alt=json", bearer)
        await call("passthrough post", 200, "POST", "/provider/up/chat/completions", {"X-API-Key": managed},
                   _chat("gpt-test", f"raw {PLANTED}"))
        rotated = await client.post(f"/admin/keys/{created.json()['id']}/rotate", headers=admin)
        assert rotated.status_code == 201, rotated.text
        traffic.issued["rotated"] = rotated.json()["key"]
        await call("rotated-out key", 401, "POST", "/v1/chat/completions", {"X-API-Key": managed}, _chat("gpt", "x"))
        await call("rotated key", 200, "POST", "/v1/chat/completions",
                   {"Authorization": f"Bearer {traffic.issued['rotated']}"}, _chat("gpt", "again"))
        await call("admin keys", 200, "GET", "/admin/keys?include_revoked=true", admin)
        await call("admin logs", 200, "GET", "/admin/logs?limit=100", admin)
        metrics = await call("metrics", 200, "GET", "/metrics", bearer)
        traffic.metrics = metrics.text
    return traffic


def _sqlite_dump(path: Path) -> str:
    """Every row of every table of the SQLite file, each column's value as text (bytes decoded as Latin-1)."""
    lines = []
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                values = [value.decode("latin-1") if isinstance(value, bytes) else str(value) for value in row]
                lines.append(f"{table}: " + " | ".join(values))
    assert "request_logs" in tables and "api_keys" in tables
    return "\n".join(lines)


async def _postgres_dump(url: str) -> str:
    """Every row of every table in the test's own database, each row as PostgreSQL's text of the whole record."""
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        tables = [(row["table_schema"], row["table_name"]) for row in await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')")]
        lines = []
        for schema, table in tables:
            for row in await connection.fetch(f'SELECT t::text AS row FROM "{schema}"."{table}" t'):
                lines.append(f"{schema}.{table}: {row['row']}")
    finally:
        await connection.close()
    assert {table for _, table in tables} >= {"request_logs", "api_keys"}
    return "\n".join(lines)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`: the config, the gateway's output, the database and its WAL, spill files, pepper."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _check_upstream(received: list[Received], callers: dict[str, str]) -> None:
    """The callers' keys nowhere in what reached the upstream; the provider's key once per request, and only as
    the `Authorization: Bearer` the config asks for."""
    assert received
    for entry in received:
        where = f"{entry.method} {entry.raw_path!r}"
        others = [value for name, value in entry.headers if name != b"authorization"]
        for part in (entry.raw_path, entry.query, bytes(entry.body),
                     *(name + b": " + value for name, value in entry.headers)):
            assert found(part, callers) == [], where
        assert found(b"\n".join([entry.raw_path, entry.query, bytes(entry.body), *others]),
                     {"provider": PROVIDER}) == [], where
        assert [value for name, value in entry.headers if name == b"authorization"] == [f"Bearer {PROVIDER}".encode()]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_no_key_in_clear_anywhere(database: str, tmp_path: Path,
                                        upstream: tuple[RecordingUpstream, Starlette]) -> None:
    recording, fake = upstream
    async with _database(database, tmp_path) as database_url:
        env = {"SLUICE_API_KEYS": STATIC, "SLUICE_ADMIN_KEY": ADMIN, "SLUICE_DATABASE_URL": database_url,
               "SECRETS_TEST_PROVIDER_KEY": PROVIDER, "SECRETS_TEST_SCOPED_KEY": SCOPED}
        with run_serve(CONFIG.format(upstream=fake.state.url, planted=PLANTED), tmp_path, env) as (url, _):
            traffic = await _drive(url, fake)
        # The gateway stopped (SIGTERM): its writers flushed, its output is complete.
        dump = _sqlite_dump(tmp_path / "sluice.db") if database == "sqlite" else await _postgres_dump(database_url)
    callers = {"static": STATIC, "scoped": SCOPED, "admin": ADMIN, "wrong": WRONG, "wrong-managed": WRONG_MANAGED,
               **traffic.issued}
    every = {**callers, "provider": PROVIDER}
    planted = {"planted": PLANTED}

    assert found(dump, planted) and dump.count("request_logs:") >= 15
    assert found(dump, every) == []

    files = _files(tmp_path)
    assert found(files["serve.log"], planted)  # the request log's stdout lines, bodies included
    assert b'"api_key_id"' in files["serve.log"]
    assert {name: found(content, every) for name, content in files.items() if found(content, every)} == {}

    assert found(traffic.metrics, planted) and "sluice_requests" in traffic.metrics
    assert found(traffic.metrics, every) == []

    assert any(found(text, planted) for _, status, text in traffic.replies if status >= 400)
    assert [(label, found(text, every)) for label, _, text in traffic.replies if found(text, every)] == []

    assert any(found(bytes(entry.body), planted) for entry in recording.received)
    _check_upstream(recording.received, callers)
    assert [entry.query for entry in recording.received if entry.query] == [b"alt=json"]  # ?key= & co. dropped


def test_the_scans_find_what_is_there(tmp_path: Path) -> None:
    """Each form of a key is caught, in text and in bytes, and in a SQLite column stored as a blob."""
    key = _token("sk-check")
    for form in forms(key):
        assert found(f"x{form}y", {"k": key}) == ["k"]
        assert found(f"x{form}y".encode(), {"k": key}) == ["k"]
    assert found("nothing here", {"k": key}) == []
    path = tmp_path / "sluice.db"
    with sqlite3.connect(path) as connection:
        for table in ("request_logs", "api_keys"):
            connection.execute(f"CREATE TABLE {table} (value BLOB)")
        connection.execute("INSERT INTO request_logs VALUES (?)", (f"Bearer {key}".encode(),))
    assert found(_sqlite_dump(path), {"k": key}) == ["k"]
    leaky = Received("GET", b"/v1/models", f"key={key}".encode(), [(b"authorization", f"Bearer {PROVIDER}".encode())])
    with pytest.raises(AssertionError):
        _check_upstream([leaky], {"k": key})
    shown = Received("GET", b"/v1/models", b"", [(b"authorization", f"Bearer {PROVIDER}".encode()),
                                                 (b"x-echo", PROVIDER.encode())])
    with pytest.raises(AssertionError):
        _check_upstream([shown], {"k": key})


class _database:
    """The request log's database for one run: a SQLite file in tmp_path, or a PostgreSQL database of its own."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind, self.tmp_path = kind, tmp_path
        self._postgres: Any = None

    async def __aenter__(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp_path}/sluice.db"
        from tests.integration.conftest import fresh_postgres_database

        self._postgres = fresh_postgres_database()
        url: str = await self._postgres.__aenter__()
        return url

    async def __aexit__(self, *exc: object) -> None:
        if self._postgres is not None:
            await self._postgres.__aexit__(*exc)


class _ThreadedProxy:
    """A `TcpProxy` on an event loop of its own thread, so the blocking start and stop of `sluice serve` never
    stall the gateway's database connections."""

    def __init__(self, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="db-proxy", daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(host, port)

    def run(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def close(self) -> None:
        self.run(self.proxy.down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


SPILL_CONFIG = CONFIG.replace(
    "request_log: {{auto_migrate: true, flush_interval_seconds: 0.05, stdout: true, stdout_bodies: true}}\n"
    "keys: {{cache_ttl_seconds: 0}}",
    "request_log: {{auto_migrate: true, flush_interval_seconds: 0.05, stdout: true, stdout_bodies: true, "
    "buffer_size: 1, batch_size: 1, retry_initial_seconds: 0.05, retry_max_seconds: 0.2, write_timeout_seconds: 1, "
    "shutdown_timeout_seconds: 1}}\nkeys: {{cache_ttl_seconds: 120, lookup_timeout_seconds: 1}}")


@pytest.mark.postgres
async def test_no_key_in_the_spill_files_while_the_database_is_down(tmp_path: Path) -> None:
    """The database goes away mid-run (through a forwarder the test controls): what the request log could not
    store is spilled to disk, and the spill files hold the traffic's bodies but none of its keys."""
    assert SPILL_CONFIG != CONFIG
    async with _database("postgresql", tmp_path) as direct_url:
        target = make_url(direct_url)
        proxy = _ThreadedProxy(target.host or "127.0.0.1", target.port or 5432)
        proxy.run(proxy.proxy.up())
        proxied = target.set(port=proxy.proxy.port).render_as_string(hide_password=False)
        env = {"SLUICE_API_KEYS": STATIC, "SLUICE_ADMIN_KEY": ADMIN, "SLUICE_DATABASE_URL": proxied,
               "SECRETS_TEST_PROVIDER_KEY": PROVIDER, "SECRETS_TEST_SCOPED_KEY": SCOPED}
        fake = create_fake_openai(api_key=PROVIDER)
        try:
            with serve(fake) as upstream_url, \
                    run_serve(SPILL_CONFIG.format(upstream=upstream_url, planted=PLANTED), tmp_path, env) as (url, _):
                async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                    created = await client.post("/admin/keys", json={"name": "spilled"},
                                                headers={"Authorization": f"Bearer {ADMIN}"})
                    assert created.status_code == 201, created.text
                    managed = created.json()["key"]
                    chat = _chat("gpt", f"before the outage {PLANTED}")
                    assert (await client.post("/v1/chat/completions", json=chat,
                                              headers={"X-API-Key": managed})).status_code == 200  # now cached
                    proxy.run(proxy.proxy.down())
                    replies = []
                    for number in range(12):
                        for headers in ({"Authorization": f"Bearer {STATIC}"}, {"X-API-Key": managed},
                                        {"Authorization": f"Bearer {SCOPED}"}, {"Authorization": f"Bearer {WRONG}"}):
                            reply = await client.post("/v1/chat/completions", headers=headers,
                                                      json=_chat("gpt" if SCOPED not in str(headers) else "mock",
                                                                 f"outage {number} {PLANTED}"))
                            assert reply.status_code in (200, 401), reply.text
                            replies.append(reply.text)
        finally:
            proxy.close()
    every = {"static": STATIC, "scoped": SCOPED, "admin": ADMIN, "wrong": WRONG, "managed": managed,
             "provider": PROVIDER}
    files = _files(tmp_path)
    spilled = {name: content for name, content in files.items() if "spill" in name and not name.endswith(".lock")}
    assert any(found(content, {"planted": PLANTED}) for content in spilled.values()), sorted(files)
    assert {name: found(content, every) for name, content in files.items() if found(content, every)} == {}
    assert [text for text in replies if found(text, every)] == []
