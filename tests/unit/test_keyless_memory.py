"""Requests without an API key are refused without holding memory: 20,000 of them grow the heap by under 2 MB."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sluice.app import create_app
from sluice.config import parse_config
from sluice.settings import Settings

CONFIG = """
providers: {mock: {type: mock}}
models: [{name: mock, provider: mock, model: mock-1}]
request_log: {enabled: false}
"""
BODY = b'{"model":"mock","messages":[{"role":"user","content":"hi"}]}'
REQUESTS = 20_000
MAX_GROWTH = 2 * 1024 * 1024


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"sluice"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(BODY)).encode())],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}


async def _growth(tmp_path: Path, method: str, path: str) -> tuple[int, list[int]]:
    """Bytes the traced heap grew by over `REQUESTS` keyless requests (after a warm-up), and their statuses."""
    app = create_app(parse_config(CONFIG, "test.yaml"), Settings(api_keys=["sk-test-key"], data_dir=str(tmp_path)))
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, messages.get, sent.put))
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def requests(count: int) -> None:
        for _ in range(count):
            await app(_scope(method, path), receive, send)
            await asyncio.sleep(0)  # as a server's loop would between requests: observers' tasks take their turn
        await asyncio.sleep(0.2)

    await requests(500)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await requests(REQUESTS)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan
    return grown, statuses


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat/completions"), ("GET", "/v1/models")])
def test_keyless_requests_hold_no_memory(tmp_path: Path, method: str, path: str) -> None:
    grown, statuses = asyncio.run(_growth(tmp_path, method, path))
    assert set(statuses) == {401} and len(statuses) == REQUESTS + 500
    assert grown < MAX_GROWTH, f"{REQUESTS} keyless requests grew the heap by {grown / 1e6:.1f} MB"
