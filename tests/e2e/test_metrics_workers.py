"""`sluice serve --workers 2`: every scrape, whichever worker answers it, counts the requests of both workers once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve import stop_group
from tests.servers import free_port

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {enabled: false}
metrics: {require_key: false}
"""
REQUESTS = 40


def requests_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "sluice_requests_total" and sample.labels.get("status") == "200")


def chat(url: str, index: int) -> int:
    reply = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"}, timeout=10,
                       json={"model": "mock", "messages": [{"role": "user", "content": f"n{index}"}]})
    return reply.status_code


def test_two_workers_are_counted_together_without_double_counting(tmp_path: Path) -> None:
    config = tmp_path / "sluice.yaml"
    config.write_text(CONFIG)
    port = free_port()
    env = {**os.environ, "SLUICE_API_KEYS": "sk-e2e", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "sluice serve --workers 2 did not start"
            time.sleep(0.2)
        metric_files = tmp_path / "metrics"
        while len(list(metric_files.glob("gauge_livesum_*.db"))) < 2:  # /health answered; the other may still boot
            assert process.poll() is None and time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.2)
        with ThreadPoolExecutor(8) as pool:  # concurrent connections, so both workers may take some
            assert all(status == 200 for status in pool.map(partial(chat, url), range(REQUESTS)))
        counted = [requests_total(url) for _ in range(2)]
        deadline = time.monotonic() + 5  # the worker that does not answer the scrape counts within 0.5 s
        while counted[-1] < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.2)
            counted.append(requests_total(url))
        assert counted[-1] == REQUESTS
        assert len(list(metric_files.glob("gauge_livesum_*.db"))) == 2  # both workers in multiprocess mode
    finally:
        stop_group(process)
