"""Two `sluice serve` processes sharing one Redis enforce one limit: N requests a minute in total, not N each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import stop_group
from tests.limits_support import redis_backend
from tests.servers import free_port

pytestmark = pytest.mark.redis

CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
limits: {{{limits}}}
static_keys:
  - {{key: sk-shared, limits: {{requests_per_minute: {rpm}}}}}
request_log: {{enabled: false}}
"""
RPM = 7
ATTEMPTS = 30


def start(config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, f"{url} did not start"
        time.sleep(0.1)


def chat(url: str) -> int:
    return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer sk-shared"}, timeout=10,
                      json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_two_processes_share_one_global_limit(tmp_path: Path) -> None:
    with redis_backend() as backend:
        config = tmp_path / "sluice.yaml"
        config.write_text(CONFIG.format(limits=backend.yaml, rpm=RPM))
        env = {**os.environ, "SLUICE_REDIS_URL": backend.settings["redis_url"], "SLUICE_DATA_DIR": str(tmp_path)}
        env.pop("SLUICE_API_KEYS", None)
        ports = [free_port(), free_port()]
        processes = [start(config, port, env) for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, process in zip(urls, processes, strict=True):
                wait_until_up(url, process)
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(chat, [urls[i % 2] for i in range(ATTEMPTS)]))
        finally:
            for process in processes:
                stop_group(process)
    assert statuses.count(200) == RPM
    assert statuses.count(429) == ATTEMPTS - RPM
