"""`sluice serve` started while every optional dependency is unreachable (PostgreSQL, Redis and the trace collector
on closed ports): it starts, serves chat, `/health` stays 200, and `/health/ready` says what is missing."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.test_serve import run_serve

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
"""
CLOSED = "127.0.0.1:9"


def test_it_serves_and_readiness_names_what_is_missing(tmp_path: Path) -> None:
    env = {"SLUICE_REDIS_URL": f"redis://{CLOSED}/0", "SLUICE_DATABASE_URL": f"postgresql+asyncpg://postgres@{CLOSED}/x",
           "PHOENIX_COLLECTOR_ENDPOINT": f"http://{CLOSED}"}
    with run_serve(CONFIG, tmp_path, env) as (url, _):
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        chat = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"}, timeout=10,
                          json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200, chat.text
        ready = httpx.get(url + "/health/ready", timeout=10)
        body = ready.json()
        assert ready.status_code == 503
        assert body["database"] == "down" and any("database" in reason for reason in body["reasons"])
        assert body["redis"] == "down" and any("Redis" in note for note in body["degraded"])
        assert body["models"] == {"total": 1, "serving": 1}
        assert CLOSED not in ready.text
