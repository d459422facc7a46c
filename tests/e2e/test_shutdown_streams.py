"""SIGTERM to `sluice serve` during 100 open streams: streams that end within `server.shutdown_grace_seconds` all
finish (`[DONE]`), and those that would not are ended with a proper error event (`server_shutting_down`) when the
grace runs out, never cut mid-body; the server exits 0 either way."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.test_serve import run_serve

STREAMS = 100


def config(chunks: int, grace: float) -> str:
    return f"""
providers:
  mock: {{type: mock, chunk_delay_ms: 100, chunks: {chunks}}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
server: {{shutdown_grace_seconds: {grace}}}
request_log: {{enabled: false}}
"""


async def _stream(client: httpx.AsyncClient, url: str, words: int) -> list[str]:
    events: list[str] = []
    async with client.stream("POST", url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"},
                             json={"model": "mock", "stream": True,
                                   "messages": [{"role": "user", "content": "w " * words}]}) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.startswith("data:"):
                events.append(line.removeprefix("data:").strip())
    return events


async def _streams_through_sigterm(url: str, process: subprocess.Popen[bytes], words: int
                                   ) -> tuple[list[list[str] | BaseException], float]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=STREAMS * 2)) as client:
        tasks = [asyncio.create_task(_stream(client, url, words)) for _ in range(STREAMS)]
        await asyncio.sleep(0.8)  # every stream open and under way
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        return ended, time.monotonic() - signalled


def test_streams_within_the_grace_all_finish(tmp_path: Path) -> None:
    with run_serve(config(chunks=25, grace=10), tmp_path) as (url, process):
        ended, _ = asyncio.run(_streams_through_sigterm(url, process, words=25))
        assert process.wait(20) == 0
    broken = [result for result in ended if isinstance(result, BaseException)]
    assert not broken, broken[:3]
    assert all(events[-1] == "[DONE]" for events in ended if isinstance(events, list))


def test_streams_longer_than_the_grace_end_with_an_error_event(tmp_path: Path) -> None:
    with run_serve(config(chunks=300, grace=2), tmp_path) as (url, process):
        ended, took = asyncio.run(_streams_through_sigterm(url, process, words=300))
        assert process.wait(20) == 0
    broken = [result for result in ended if isinstance(result, BaseException)]
    assert not broken, broken[:3]  # none cut mid-body (httpx would raise RemoteProtocolError)
    for events in ended:
        assert isinstance(events, list) and len(events) > 5
        error = json.loads(events[-1])["error"]
        assert error["code"] == "server_shutting_down"
    assert 1.8 < took < 4.5


def test_the_sdk_raises_the_shutdown_error_event(tmp_path: Path) -> None:
    with run_serve(config(chunks=300, grace=1), tmp_path) as (url, process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="sk-e2e", max_retries=0)
        stream = sdk.chat.completions.create(model="mock", stream=True,
                                             messages=[{"role": "user", "content": "w " * 300}])
        first = next(iter(stream))
        assert first.choices[0].delta is not None
        process.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="restarting"):
            for _ in stream:
                pass
        assert process.wait(20) == 0
