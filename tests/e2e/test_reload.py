"""Reloading `sluice serve`'s config (SIGHUP, `sluice reload`): the new file is checked first; a bad one is refused
and the running config stays, a good one is taken without failing a request in flight or arriving meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.e2e.test_serve import run_serve, worker_pids
from tests.servers import free_port, serve

CONFIG = """
providers:
  mock: {type: mock, latency_ms: 20, chunk_delay_ms: 60, chunks: 10}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {enabled: false}
metrics: {require_key: false}
server: {shutdown_grace_seconds: 10}
"""
AUTH = {"Authorization": "Bearer sk-e2e"}


def model_ids(url: str) -> list[str]:
    reply = httpx.get(url + "/v1/models", headers=AUTH, timeout=5)
    return sorted(model["id"] for model in reply.json()["data"])


def reloads(url: str) -> dict[str, float]:
    """`sluice_config_reloads_total` by result, as a worker's /metrics shows it."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {sample.labels["result"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "sluice_config_reloads_total"}


def reload_command(tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", "reload", "--port", str(port)], capture_output=True,
                          text=True, timeout=90, env={**os.environ, "SLUICE_DATA_DIR": str(tmp_path / "data")})


def log_lines(tmp_path: Path) -> list[dict[str, str]]:
    """The server's log lines; one that is not JSON (a traceback's) counts as an error line."""
    lines = []
    for line in (tmp_path / "serve.log").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"event": line, "level": "error"})
    return lines


def test_sighup_with_a_bad_config_keeps_the_running_one(tmp_path: Path) -> None:
    with run_serve(CONFIG, tmp_path) as (url, process):
        workers = worker_pids(process.pid)
        config = tmp_path / "sluice.yaml"
        config.write_text(CONFIG.replace("provider: mock,", "provider: mokc,"))
        os.kill(process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not [line for line in log_lines(tmp_path) if line["level"] == "error"]:
            assert time.monotonic() < deadline, "no error logged for the refused config"
            time.sleep(0.2)
        time.sleep(1)
        errors = [line["event"] for line in log_lines(tmp_path) if line["level"] in ("error", "critical")]
        assert len(errors) == 1, errors
        assert f"{config}: models[0].provider: unknown provider 'mokc' (known: mock)" in errors[0]
        assert "running configuration stays" in errors[0]
        assert process.poll() is None and worker_pids(process.pid) == workers
        assert model_ids(url) == ["mock"]
        assert reloads(url) == {"success": 0, "failure": 1}


@pytest.mark.parametrize(("workers", "trigger"), [(1, "sighup"), (2, "command")])
def test_reload_under_load_fails_no_request(tmp_path: Path, workers: int, trigger: str) -> None:
    port = free_port()
    service = Starlette(routes=[Route("/{path:path}", lambda request: JSONResponse({"pong": request.url.path}))])
    with serve(service) as service_url, \
            run_serve(CONFIG, tmp_path, port=port, args=["--workers", str(workers)]) as (url, process):
        deadline = time.monotonic() + 30
        while len(worker_pids(process.pid)) < workers:  # /health answered; another may still boot
            assert time.monotonic() < deadline
            time.sleep(0.1)
        old_workers = worker_pids(process.pid)
        stop = threading.Event()
        answered: Counter[str] = Counter()
        failures: list[str] = []
        streams: list[tuple[float, float]] = []  # when each stream started and ended

        def load(kind: str, index: int) -> None:
            body = {"model": "mock", "stream": kind == "stream",
                    "messages": [{"role": "user", "content": f"client {index} says one two three four five"}]}
            with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        if kind == "stream":
                            with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                                events = [line for line in reply.iter_lines() if line.startswith("data: ")]
                            ok = reply.status_code == 200 and events[-1:] == ["data: [DONE]"] and len(events) > 10
                        else:
                            reply = client.post("/v1/chat/completions", json=body)
                            ok = reply.status_code == 200 and bool(reply.json()["choices"][0]["message"]["content"])
                    except (httpx.HTTPError, ValueError) as exc:
                        failures.append(f"{kind}: {exc!r}")
                        continue
                    if ok:
                        answered[kind] += 1
                        if kind == "stream":
                            streams.append((started, time.monotonic()))
                    else:
                        failures.append(f"{kind}: {reply.status_code}")

        clients = [threading.Thread(target=load, args=(kind, index)) for index, kind in
                   enumerate(["chat", "chat", "chat", "stream", "stream", "stream"])]
        for client in clients:
            client.start()
        try:
            time.sleep(1)
            (tmp_path / "sluice.yaml").write_text(CONFIG.replace(
                "models:\n", "models:\n  - {name: fresh, provider: mock, model: mock-2}\n") + f"""
services:
  pinger: {{instances: [{{url: "{service_url}"}}]}}
routes:
  - {{path: "/svc/**", service: pinger}}
""")  # a new model and a new service route
            if trigger == "command":
                done = reload_command(tmp_path, port)
                assert done.returncode == 0, done.stderr
                assert "reloaded" in done.stdout
                assert model_ids(url) == ["fresh", "mock"]  # new connections reach new workers only
            else:
                os.kill(process.pid, signal.SIGHUP)
                deadline = time.monotonic() + 60
                while model_ids(url) != ["fresh", "mock"]:
                    assert time.monotonic() < deadline, "the new config did not take effect"
                    time.sleep(0.2)
            switched = time.monotonic()
            assert httpx.get(url + "/svc/ping", headers=AUTH, timeout=10).json() == {"pong": "/svc/ping"}
            time.sleep(1.5)
        finally:
            stop.set()
            for client in clients:
                client.join(30)
        assert failures == []
        assert answered["chat"] > 20 and answered["stream"] > 6, answered
        assert any(start < switched < end for start, end in streams), "no stream was in flight at the switch"
        deadline = time.monotonic() + 20
        while (new_workers := worker_pids(process.pid)) & old_workers:  # the old ones finish their last streams
            assert time.monotonic() < deadline, "an old worker did not stop"
            time.sleep(0.1)
        assert len(new_workers) == workers
        assert reloads(url) == {"success": 1, "failure": 0}


FLAKY_PROJECT = '''
"""Imports in `sluice check-config`, fails in a granian worker: a new config whose workers cannot start."""
import multiprocessing

from sluice.projects.demo import project  # noqa: F401

if multiprocessing.current_process().name == "granian-worker":
    raise RuntimeError("this project cannot start in a worker")
'''


def test_a_new_worker_that_cannot_start_leaves_the_old_one_serving(tmp_path: Path) -> None:
    (tmp_path / "flaky_project.py").write_text(FLAKY_PROJECT)
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    with run_serve(CONFIG, tmp_path, env, port=port) as (url, process):
        workers = worker_pids(process.pid)
        (tmp_path / "sluice.yaml").write_text(CONFIG + "projects:\n  - {name: flaky, module: flaky_project}\n")
        done = reload_command(tmp_path, port)
        assert done.returncode == 1
        assert done.stderr.startswith("sluice: config reload failed, 1 of 1 workers keep the running configuration: "
                                      "the new worker-1 exited while starting"), done.stderr
        time.sleep(1.5)  # had its exit been taken for a crash, granian would have replaced the old worker by now
        assert process.poll() is None and worker_pids(process.pid) == workers
        assert model_ids(url) == ["mock"]
        assert reloads(url) == {"success": 0, "failure": 1}
