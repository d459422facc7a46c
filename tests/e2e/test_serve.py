"""`sluice serve` as users run it: a real granian process, the official SDK, and a graceful SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
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
def run_serve(config_text: str, tmp_path: Path, env: dict[str, str] | None = None, *, args: Sequence[str] = (),
              port: int | None = None, output: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`sluice serve` with this config (key sk-e2e, data dir in tmp_path) on a free port (or `port`), once /health
    answers; stopped on exit. Its stdout and stderr go to `output` (default tmp_path/serve.log)."""
    config = tmp_path / "sluice.yaml"
    config.write_text(config_text)
    port = port or free_port()
    output = output or tmp_path / "serve.log"
    with output.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port), *args],
            env={**os.environ, "SLUICE_API_KEYS": "sk-e2e", "SLUICE_DATA_DIR": str(tmp_path / "data"), **(env or {})},
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
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
            stop_group(process)
            pytest.fail(f"sluice serve did not start: {output.read_text()}")
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


QUIET_CONFIG = CONFIG + "request_log: {enabled: false}\n"  # no writer process beside the worker


@pytest.mark.parametrize("config", [QUIET_CONFIG, CONFIG], ids=["log-off", "default"])
def test_each_log_event_is_one_line(tmp_path: Path, config: str) -> None:
    """granian's supervisor handler, inherited by the worker, printed every worker line a second time; the request
    log's writer process repeated the worker's "no price" warning."""
    with run_serve(config, tmp_path) as (url, _):
        reply = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"}, timeout=10,
                           json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200
        time.sleep(0.5)
    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if line.strip()]
    events = Counter(record["event"] for record in map(json.loads, lines) if "event" in record)
    assert events["Started worker-1"] == 1, lines
    assert sum(count for event, count in events.items() if event.startswith("no price for model 'mock'")) == 1, lines
    assert [event for event, count in events.items() if count > 1] == [], lines


SECOND_CONFIG = CONFIG.replace("models:\n", "models:\n  - {name: second, provider: mock, model: mock-2}\n")


def _second_serve(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    config = tmp_path / "second.yaml"
    config.write_text(SECOND_CONFIG)
    return subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port), *args],
        env={**os.environ, "SLUICE_API_KEYS": "sk-e2e", "SLUICE_DATA_DIR": str(tmp_path / "data2")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    with run_serve(CONFIG, tmp_path, port=port) as (url, _):
        second = _second_serve(tmp_path, port)
        try:
            output, _ = second.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            stop_group(second)
            pytest.fail("a second gateway started on a port already in use")
        assert second.returncode != 0
        assert output.strip().count("\n") == 0, output
        assert "address already in use" in output and f"127.0.0.1:{port}" in output and "--reuse-port" in output
        assert httpx.get(url + "/health", timeout=5).status_code == 200  # the first one is untouched


def test_uvicorn_is_refused_a_port_in_use_too(tmp_path: Path) -> None:
    config = tmp_path / "sluice.yaml"
    config.write_text(CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "sluice", "serve", "--server", "uvicorn", "--config", str(config), "--port",
             str(port)], env={**os.environ, "SLUICE_API_KEYS": "sk-e2e", "SLUICE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"sluice: cannot listen on 127.0.0.1:{port}: address already in use (another server has "
                           "this port: stop it or choose another --port)\n")


def test_reuse_port_shares_the_port_on_purpose(tmp_path: Path) -> None:
    port = free_port()
    with run_serve(CONFIG, tmp_path, port=port, args=["--reuse-port"]) as (url, _):
        second = _second_serve(tmp_path, port, "--reuse-port")
        try:
            seen: set[tuple[str, ...]] = set()
            deadline = time.monotonic() + 30
            while len(seen) < 2:  # each new connection goes to one of the two, as the kernel spreads them
                assert second.poll() is None, second.stdout.read() if second.stdout else ""
                assert time.monotonic() < deadline, f"only {seen} answered"
                reply = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-e2e"}, timeout=5)
                seen.add(tuple(sorted(model["id"] for model in reply.json()["data"])))
            assert seen == {("mock",), ("mock", "second")}
        finally:
            stop_group(second)


BROKEN_PROJECT = CONFIG + "projects:\n  - {name: broken, module: sluice_no_such_module}\n"


def test_serve_stops_at_a_project_that_cannot_be_imported(tmp_path: Path) -> None:
    config = tmp_path / "sluice.yaml"
    config.write_text(BROKEN_PROJECT)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(free_port())],
            env={**os.environ, "SLUICE_API_KEYS": "sk-e2e", "SLUICE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True, text=True, timeout=30, start_new_session=True)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice serve kept running with a project that cannot be imported")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert (f"{config}: projects[0].module (sluice_no_such_module): cannot be imported: ModuleNotFoundError: "
            "No module named 'sluice_no_such_module'") in done.stderr


def test_make_run_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "SLUICE_HOST"}
    output = tmp_path / "make.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(  # -o install: the venv is there already; run only the serve line
            ["make", "--no-print-directory", "-o", "install", "run"], cwd=Path(__file__).parents[2], stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, "SLUICE_PORT": str(port), "SLUICE_DATA_DIR": str(tmp_path / "data")})
    try:
        deadline = time.monotonic() + 30
        while "Listening at: http://" not in output.read_text():
            assert process.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        assert f"Listening at: http://127.0.0.1:{port}" in output.read_text()
    finally:
        stop_group(process)
