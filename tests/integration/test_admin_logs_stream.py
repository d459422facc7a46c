"""`GET /admin/logs/stream` through a served gateway: the backlog, new entries live, filters, keep-alives, auth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sluice.app import create_app
from sluice.config import parse_config
from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.http import admin_logs
from sluice.settings import Settings
from tests.conftest import DEV_KEY, run_gateway
from tests.request_log_support import make_exchange, seed
from tests.servers import serve

ADMIN = "sk-admin-test"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
  - {name: mock-b, provider: mock, model: mock-1}
request_log: {flush_interval_seconds: 0.5, stdout: false}
"""
ARRIVAL_SECONDS = 2.0


@pytest.fixture
def gateway() -> Iterator[str]:
    with run_gateway(CONFIG, admin_key=ADMIN) as url:
        yield url


class Stream:
    """The events and comments of one open stream, parsed as they arrive by a task of their own (a wait that times
    out must not cancel the read)."""

    def __init__(self, response: httpx.Response) -> None:
        self.arrived: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read(response))

    async def next_event(self, within: float = ARRIVAL_SECONDS) -> tuple[str, Any]:
        """The next event (`entry` with its parsed data) or comment (`:` with its text)."""
        return await asyncio.wait_for(self.arrived.get(), within)

    async def _read(self, response: httpx.Response) -> None:
        event, data = "message", []
        async for line in response.aiter_lines():
            if line.startswith(":"):
                await self.arrived.put((":", line[1:].strip()))
            elif line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
            elif line == "" and data:
                await self.arrived.put((event, orjson.loads("\n".join(data))))
                event, data = "message", []
        await self.arrived.put(("end", None))

    async def no_event_for(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            kind, value = await self.next_event(seconds)
            pytest.fail(f"unexpected {kind} {value}")


async def _chat(client: httpx.AsyncClient, text: str, model: str = "mock") -> str:
    response = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                                 json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200
    return response.headers["x-request-id"]


async def _stored(client: httpx.AsyncClient, count: int) -> None:
    """Wait until the log holds `count` entries."""
    deadline = time.monotonic() + 10
    while len((await client.get("/admin/logs", params={"limit": 100})).json()["data"]) < count:
        assert time.monotonic() < deadline, "the entries were not stored"
        await asyncio.sleep(0.1)


def _admin(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


async def _open(client: httpx.AsyncClient, **params: Any) -> AsyncIterator[Stream]:
    async with client.stream("GET", "/admin/logs/stream", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        assert await stream.next_event() == (":", "connected")  # at once, before any entry or keep-alive
        try:
            yield stream
        finally:
            stream.reader.cancel()


def test_a_request_made_after_connecting_arrives_within_two_seconds(gateway: str) -> None:
    async def scenario() -> None:
        async with _admin(gateway) as client:
            async for stream in _open(client, backlog=0):
                request_id = await _chat(client, "live one")
                sent = time.monotonic()
                kind, entry = await stream.next_event()
                assert time.monotonic() - sent < ARRIVAL_SECONDS
                assert kind == "entry" and entry["request_id"] == request_id
                assert entry["provider"]["model_requested"] == "mock" and entry["response"]["status_code"] == 200
                assert "body" not in entry["request"] and "body" not in entry["response"]  # as /admin/logs items
                listed = (await client.get("/admin/logs", params={"limit": 1})).json()["data"][0]
                assert entry == listed
                await stream.no_event_for(1.2)  # sent once, though every poll looks back a few seconds

    asyncio.run(scenario())


def test_the_backlog_comes_first_oldest_first(gateway: str) -> None:
    async def scenario() -> None:
        async with _admin(gateway) as client:
            ids = [await _chat(client, f"before {index}") for index in range(3)]
            await _stored(client, 3)
            async for stream in _open(client, backlog=2):
                assert [(await stream.next_event())[1]["request_id"] for _ in range(2)] == ids[1:]
                await stream.no_event_for(1.2)  # the oldest is not sent later as a late arrival
                after = await _chat(client, "after")
                assert (await stream.next_event())[1]["request_id"] == after

    asyncio.run(scenario())


def test_filters_model_and_free_text(gateway: str) -> None:
    async def scenario() -> None:
        async with _admin(gateway) as client:
            async for by_model in _open(client, backlog=0, model="mock-b"):
                await _chat(client, "not this one")
                wanted = await _chat(client, "this one", model="mock-b")
                kind, entry = await by_model.next_event()
                assert entry["request_id"] == wanted and entry["provider"]["model_requested"] == "mock-b"
                await by_model.no_event_for(1.2)
            async for by_text in _open(client, backlog=10, q="PineApple 50%"):
                await _chat(client, "a pineapple 5%")  # % is literal, not a wildcard
                wanted = await _chat(client, "one PINEAPPLE 50% please")
                assert (await by_text.next_event())[1]["request_id"] == wanted
                await by_text.no_event_for(1.2)
            listed = (await client.get("/admin/logs", params={"q": "pineapple 50%"})).json()["data"]
            assert [entry["request_id"] for entry in listed] == [wanted]
            none = (await client.get("/admin/logs", params={"service": "mock"})).json()["data"]
            assert none == []  # chat exchanges are not a service's, though their provider is "mock"

    asyncio.run(scenario())


def test_a_keep_alive_comment_when_quiet(gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_logs, "KEEP_ALIVE_SECONDS", 0.6)

    async def scenario() -> None:
        async with _admin(gateway) as client:
            async for stream in _open(client, backlog=0):
                assert await stream.next_event(3) == (":", "keep-alive")

    asyncio.run(scenario())


def test_the_stream_ends_when_the_worker_drains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(parse_config(CONFIG, "test.yaml"),
                     Settings(api_keys=[DEV_KEY], admin_key=ADMIN, data_dir=str(tmp_path), build="test"))
    loops: list[asyncio.AbstractEventLoop] = []
    polling = threading.Event()
    waiting = admin_logs._stopping

    async def noting_the_loop(closing: asyncio.Event, seconds: float) -> bool:
        loops.append(asyncio.get_running_loop())
        polling.set()
        return await waiting(closing, seconds)

    monkeypatch.setattr(admin_logs, "_stopping", noting_the_loop)

    async def scenario(url: str) -> None:
        async with _admin(url) as client:
            async for stream in _open(client, backlog=0):
                assert await asyncio.to_thread(polling.wait, 5)
                loops[0].call_soon_threadsafe(app.drain)  # what SIGTERM and a reload do to a worker
                assert await stream.next_event() == ("end", None)

    with serve(app) as url:
        asyncio.run(scenario(url))


def test_the_admin_key_is_required(gateway: str) -> None:
    assert httpx.get(gateway + "/admin/logs/stream").status_code == 401
    refused = httpx.get(gateway + "/admin/logs/stream", headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert refused.status_code == 403
    too_many = httpx.get(gateway + "/admin/logs/stream", params={"backlog": 201},
                         headers={"Authorization": f"Bearer {ADMIN}"})
    assert too_many.status_code == 400


def test_with_the_request_log_disabled_the_stream_says_so() -> None:
    config = "providers:\n  mock: {type: mock}\nrequest_log: {enabled: false}\n"
    with run_gateway(config, admin_key=ADMIN) as url:
        response = httpx.get(url + "/admin/logs/stream", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "request_log_disabled"


@pytest.mark.anyio
async def test_free_text_and_service_filters_on_each_database(database_url: str) -> None:
    """`q` is ILIKE on PostgreSQL (the JSONB body as text) and lower() LIKE lower() on SQLite."""
    db = Database(database_url)
    await upgrade(db)
    service = make_exchange(2, text="to the users service")
    service.operation, service.provider, service.model = "service", "users", None
    rows = await seed(db, [make_exchange(0, text="Ünïcode and a Kiwi"), make_exchange(1, text="only a kiwi_fruit"),
                           service])
    await db.aclose()
    with run_gateway(admin_key=ADMIN, database_url=database_url) as url:
        async with _admin(url) as client:
            async def found(**params: Any) -> list[str]:
                reply = await client.get("/admin/logs", params=params)
                assert reply.status_code == 200, reply.text
                return [entry["log_id"] for entry in reply.json()["data"]]

            assert await found(q="KIWI") == [rows[1]["id"], rows[0]["id"]]
            assert await found(q="kiwi_") == [rows[1]["id"]]  # _ is literal
            assert await found(q="a kiwi") == [rows[1]["id"], rows[0]["id"]]
            assert await found(q="banana") == []
            assert await found(service="users") == [rows[2]["id"]]
            assert await found(service="mock") == []
            async for stream in _open(client, backlog=5, q="kiwi"):
                in_id_order = sorted([rows[0]["id"], rows[1]["id"]])  # made in one millisecond, perhaps
                assert [(await stream.next_event())[1]["log_id"] for _ in range(2)] == in_id_order
                await stream.no_event_for(0.8)


def test_tracing_info_names_phoenix_for_trace_links(tmp_path: Path) -> None:
    """The console links a request's trace to Phoenix's `/redirects/traces/{id}` when traces go to Phoenix."""
    with run_gateway(CONFIG, data_dir=str(tmp_path), admin_key=ADMIN,
                     phoenix_collector_endpoint="http://127.0.0.1:9/v1/traces") as url:
        reply = httpx.get(url + "/admin/tracing", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reply.status_code == 200 and reply.json() == {"phoenix_url": "http://127.0.0.1:9"}
        assert httpx.get(url + "/admin/tracing").status_code == 401
    with run_gateway(CONFIG, data_dir=str(tmp_path / "off"), admin_key=ADMIN) as url:
        reply = httpx.get(url + "/admin/tracing", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reply.json() == {"phoenix_url": None}
