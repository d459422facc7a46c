"""`sluice serve` as users run it: a real granian process, the official SDK, and a graceful SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import free_port
from tests.unit.test_sched_slice import custom_slices_supported

CONFIG = """
providers:
  mock: {type: mock, chunk_delay_ms: 150, chunks: 10}
models:
  - {name: mock, provider: mock, model: mock-1}
server: {shutdown_grace_seconds: 10}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with run_serve(CONFIG, tmp_path) as started:
        yield started


@contextlib.contextmanager
def run_serve(config_text: str, tmp_path: Path, env: dict[str, str] | None = None
              ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`sluice serve` with this config (key sk-e2e) on a free port, once /health answers; stopped on exit."""
    config = tmp_path / "sluice.yaml"
    config.write_text(config_text)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port)],
        env={**os.environ, "SLUICE_API_KEYS": "sk-e2e", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"sluice serve did not start: {output}")
        time.sleep(0.1)
    try:
        yield url, process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and its worker processes: SIGTERM, then SIGKILL for whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def test_sdk_streams_through_sluice_serve(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = served
    sdk = openai.OpenAI(base_url=url + "/v1", api_key="sk-e2e", max_retries=0)
    started = time.monotonic()
    arrivals: list[float] = []
    text = ""
    for chunk in sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "one two three "
                                             "four five six seven eight nine ten"}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            text += chunk.choices[0].delta.content
    assert text == "one two three four five six seven eight nine ten"
    # Chunks arrive spread out as the upstream produces them (150 ms apart), not buffered into one burst.
    assert arrivals[-1] - arrivals[0] > 0.8


def test_sigterm_lets_an_in_flight_stream_finish(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = served
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g h i j"}]}
    received: list[str] = []

    def consume() -> None:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=20,
                          headers={"Authorization": "Bearer sk-e2e"}) as reply:
            received.extend(line for line in reply.iter_lines() if line.startswith("data: "))

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    reader.join(20)
    assert received and received[-1] == "data: [DONE]"
    assert process.wait(20) == 0


def worker_pids(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children}


def test_a_killed_worker_is_replaced(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = served
    (worker,) = worker_pids(process.pid)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        replacements = worker_pids(process.pid) - {worker}
        if replacements:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        assert process.poll() is None, "the server stopped when its worker died"
        assert time.monotonic() < deadline, "no worker answered after the first was killed"
        time.sleep(0.1)
    sdk = openai.OpenAI(base_url=url + "/v1", api_key="sk-e2e", max_retries=0)
    reply = sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "still here"}])
    assert reply.choices[0].message.content


@pytest.mark.skipif(not custom_slices_supported(), reason="the kernel has no per-thread slices (Linux < 6.12)")
def test_the_workers_threads_ask_for_short_slices(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    """Every thread of the worker: granian's, the event loop's, and those started later."""
    url, process = served
    httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"},
               json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    (worker,) = worker_pids(process.pid)
    slices = {}
    for task in Path(f"/proc/{worker}/task").iterdir():
        for line in (task / "sched").read_text().splitlines():
            if line.startswith("se.slice"):
                slices[task.name] = int(line.split(":")[1])
    assert len(slices) >= 3 and set(slices.values()) == {100_000}, slices
