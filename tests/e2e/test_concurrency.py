"""How many requests one `sluice serve` worker holds at once: thousands by default, SLUICE_MAX_CONCURRENCY if set."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.e2e.test_serve import run_serve

CONFIG = """
providers:
  slow: {type: mock, latency_ms: 2000}
models:
  - {name: slow, provider: slow, model: slow-1}
"""
BODY = b'{"model":"slow","messages":[{"role":"user","content":"hi"}]}'


async def _one(port: int, started: float) -> tuple[int, float]:
    """One chat request on its own connection: its status and when its answer was complete."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer sk-e2e\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
    await writer.drain()
    reply = await reader.read()  # the server closes after the answer (Connection: close)
    writer.close()
    return int(reply.split(b" ", 2)[1]), time.monotonic() - started


async def _burst(url: str, count: int) -> list[tuple[int, float]]:
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    return await asyncio.wait_for(asyncio.gather(*(_one(port, started) for _ in range(count))), 30)


def test_one_worker_holds_more_than_a_thousand_slow_requests(tmp_path: Path) -> None:
    """granian's default let a worker hold 1,024 connections; the rest waited, unanswered, for a free one."""
    with run_serve(CONFIG, tmp_path) as (url, _):
        answers = asyncio.run(_burst(url, 1100))
    assert {status for status, _ in answers} == {200}
    slowest = max(done for _, done in answers)
    assert slowest < 3.9, f"some requests waited for a second 2 s round: slowest took {slowest:.2f} s"


def test_max_concurrency_makes_the_rest_wait(tmp_path: Path) -> None:
    with run_serve(CONFIG, tmp_path, {"SLUICE_MAX_CONCURRENCY": "2"}) as (url, _):
        answers = asyncio.run(_burst(url, 4))
    finished = sorted(done for _, done in answers)
    assert {status for status, _ in answers} == {200}
    assert finished[1] < 3.5 and finished[2] > 3.9, finished  # two served at once, then the other two
