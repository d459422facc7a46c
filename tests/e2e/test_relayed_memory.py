"""Long bodies relayed by `sluice serve` with the request log on: a 96 MiB streamed passthrough download moves the
whole process tree's memory (worker, log writer) by far less than its size, and its log row says the body was
not kept whole; an LLM stream longer than `request_log.max_body_bytes` keeps its usage (from its last events) and
its row says it was truncated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_body_timeouts import Served
from tests.e2e.test_serve import run_serve
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

ADMIN = "sk-admin-relayed-memory"
DOWNLOAD = 96 * 1024 * 1024
KEEP = 64 * 1024


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(create_fake_openai()) as upstream:
        config = f"""
providers:
  raw: {{type: openai, base_url: "{upstream}", api_key: upstream-key}}
  mock: {{type: mock, chunks: 3000}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{max_body_bytes: {KEEP}}}
"""
        with run_serve(config, tmp_path_factory.mktemp("relayed"), {"SLUICE_ADMIN_KEY": ADMIN}) as (url, process):
            yield Served(url, process.pid)


def _row(url: str, endpoint: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = httpx.get(url + "/admin/logs", params={"limit": 20}, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=10).json()["data"]
        found = [row for row in rows if row["endpoint"].startswith(endpoint)]
        if found:
            whole = httpx.get(url + f"/admin/logs/{found[0]['log_id']}", headers={"Authorization": f"Bearer {ADMIN}"},
                              timeout=10)
            return whole.json()  # type: ignore[no-any-return]
        time.sleep(0.2)
    pytest.fail(f"no request-log row for {endpoint}")


def _download(url: str, size: int) -> int:
    received = 0
    with httpx.stream("GET", url + f"/provider/raw/raw/stream?size={size}&chunk=65536", timeout=120,
                      headers={"Authorization": "Bearer sk-e2e"}) as reply:
        assert reply.status_code == 200
        for piece in reply.iter_bytes():
            received += len(piece)
    return received


def test_a_long_download_is_relayed_with_bounded_memory(gateway: Served) -> None:
    assert _download(gateway.url, 1024 * 1024) == 1024 * 1024  # warm: pools, the writer's first batch
    time.sleep(1.5)
    before = gateway.tree_rss_kib()
    assert _download(gateway.url, DOWNLOAD) == DOWNLOAD
    time.sleep(1.5)  # the writer has the exchange by now
    grown_mib = (gateway.tree_rss_kib() - before) / 1024
    assert grown_mib < 32, f"the tree grew by {grown_mib:.0f} MiB relaying {DOWNLOAD >> 20} MiB"
    row = _row(gateway.url, "/provider/raw/raw/stream")
    assert "truncated" in (row["response"]["text"] or "")


def test_a_long_stream_keeps_its_usage_and_says_it_was_truncated(gateway: Served) -> None:
    words = " ".join(f"word{index}" for index in range(3000))
    events = 0
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"},
                      json={"model": "mock", "stream": True, "stream_options": {"include_usage": True},
                            "messages": [{"role": "user", "content": words}]}, timeout=60) as reply:
        for line in reply.iter_lines():
            events += line.startswith("data:")
    assert events > 1000
    row = _row(gateway.url, "/v1/chat/completions")
    assert row["usage"]["total_tokens"], row["usage"]
    assert "truncated" in row["response"]["text"]
    assert len(row["response"]["text"]) < 2 * KEEP
