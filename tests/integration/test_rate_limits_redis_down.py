"""Redis unreachable: `on_backend_failure: open` serves (counted on /metrics), `closed` answers 503; both fast."""

from __future__ import annotations

import socket
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_gateway
from tests.servers import free_port

CONFIG = """
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
limits: {{backend: redis, on_backend_failure: {mode}, redis_timeout_seconds: 0.2,
          per_ip: {{requests_per_minute: 1}}}}
static_keys:
  - {{key: sk-limited, limits: {{requests_per_minute: 1, max_concurrent: 1}}}}
request_log: {{enabled: false}}
metrics: {{require_key: false}}
"""
HELLO = [{"role": "user", "content": "hello"}]


def timed_chat(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer sk-limited"}, timeout=10,
                       json={"model": "mock", "messages": HELLO})
    return reply, time.monotonic() - started


def failures(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "sluice_limiter_failures_total")


def test_fail_open_serves_and_counts_the_failure() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with run_gateway(CONFIG.format(mode="open"), redis_url=closed) as url:
        replies = [timed_chat(url) for _ in range(3)]  # limits of 1 a minute are not enforced without Redis
        counted = failures(url)
    assert all(reply.status_code == 200 and seconds < 1 for reply, seconds in replies), replies
    assert "ratelimit" not in replies[0][0].headers
    assert counted >= 3


def test_fail_closed_answers_503_fast() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with run_gateway(CONFIG.format(mode="closed"), redis_url=closed) as url:
        reply, seconds = timed_chat(url)
        again, _ = timed_chat(url)
    assert reply.status_code == 503 and seconds < 1
    assert reply.json()["error"]["code"] == "service_unavailable"
    assert again.status_code == 503


def test_a_redis_that_never_answers_times_out_fast() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        with run_gateway(CONFIG.format(mode="closed"), redis_url=f"redis://127.0.0.1:{port}/0") as url:
            reply, seconds = timed_chat(url)
    assert reply.status_code == 503 and seconds < 1
