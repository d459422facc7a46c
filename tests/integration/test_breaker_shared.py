"""Breakers shared through Redis: two gateways (separate Gateways, as two instances are) agree on a dead
deployment, so the second never pays the first one's failures; without Redis each keeps its own."""

from __future__ import annotations

import time

import httpx
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Error, create_fake_openai
from tests.limits_support import redis_backend
from tests.servers import serve

CONFIG = """
providers:
  a:
    type: openai
    base_url: "{url}/v1"
    api_key: upstream-key
    breaker: {{failure_threshold: 2, open_seconds: 30}}
    retries: {{attempts: 0}}
models:
  - {{name: gpt, provider: a, model: gpt-test}}
limits: {{{limits}}}
request_log: {{enabled: false}}
"""
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def dead_upstream() -> Starlette:
    app = create_fake_openai()
    app.state.script += [Error(500, "down", type="server_error")] * 20
    return app


def test_a_deployment_one_gateway_found_dead_is_refused_by_the_other() -> None:
    upstream = dead_upstream()
    with serve(upstream) as url, redis_backend() as backend:
        config = CONFIG.format(url=url, limits=backend.yaml)
        with run_gateway(config, **backend.settings) as one, run_gateway(config, **backend.settings) as two:
            assert [httpx.post(one + "/v1/chat/completions", json=BODY, headers=AUTH).status_code
                    for _ in range(2)] == [500, 500]
            reached = len(upstream.state.requests)
            time.sleep(0.7)  # the other gateway learns within a poll (0.5 s)
            refused = httpx.post(two + "/v1/chat/completions", json=BODY, headers=AUTH)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_circuit_open"
            assert len(upstream.state.requests) == reached  # it never sent the dead deployment anything


def test_without_redis_each_gateway_keeps_its_own_breaker() -> None:
    upstream = dead_upstream()
    with serve(upstream) as url:
        config = CONFIG.format(url=url, limits="backend: memory")
        with run_gateway(config) as one, run_gateway(config) as two:
            assert [httpx.post(one + "/v1/chat/completions", json=BODY, headers=AUTH).status_code
                    for _ in range(3)] == [500, 500, 503]
            time.sleep(0.7)
            assert httpx.post(two + "/v1/chat/completions", json=BODY, headers=AUTH).status_code == 500
