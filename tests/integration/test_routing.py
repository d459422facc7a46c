"""Routing through pools of deployments against real loopback upstreams: failover inside a request, fallback models,
no second answer after a stream opened, cool-down of a lone deployment, strategies, and who answered."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Delay, Error, Hang, Stream, chat_chunk, create_fake_openai
from tests.servers import serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]
PROVIDER = """
  {name}:
    type: openai
    base_url: "{url}/v1"
    api_key: upstream-key
    timeout: {{connect: 1, read: 0.5}}
    breaker: {{failure_threshold: 3, open_seconds: 30}}
    retries: {{attempts: 0}}
"""


@pytest.fixture
def upstreams() -> Iterator[tuple[Starlette, Starlette]]:
    first, second = create_fake_openai(), create_fake_openai()
    with serve(first) as one, serve(second) as two:
        first.state.url, second.state.url = one, two
        yield first, second


def providers(first: Starlette, second: Starlette) -> str:
    return "providers:" + PROVIDER.format(name="a", url=first.state.url) + \
        PROVIDER.format(name="b", url=second.state.url)


def chat(client: httpx.Client, model: str = "gpt", **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, **extra})


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def pooled(upstreams: tuple[Starlette, Starlette]) -> Iterator[httpx.Client]:
    """One model on two deployments (a then b, round-robin), and a fallback model on b."""
    first, second = upstreams
    config = providers(first, second) + """
models:
  - name: gpt
    strategy: round_robin
    deployments: [{provider: a, model: gpt-test}, {provider: b, model: gpt-4o-mini}]
  - {name: lone, provider: a, model: gpt-test, fallbacks: [backup]}
  - {name: backup, provider: b, model: gpt-4o-mini}
request_log: {enabled: false}
"""
    with run_gateway(config) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        yield client


def test_a_failing_deployment_fails_over_to_the_next_inside_one_request(
        upstreams: tuple[Starlette, Starlette], pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script += [Error(500, "boom", type="server_error")] * 2
    answers = [chat(pooled) for _ in range(4)]
    assert [reply.status_code for reply in answers] == [200] * 4
    who = [reply.headers["x-sluice-deployment"] for reply in answers]
    assert who.count("b/gpt-4o-mini") >= 2 and set(who) <= {"a/gpt-test", "b/gpt-4o-mini"}
    assert all(reply.headers["x-sluice-provider"] == reply.headers["x-sluice-deployment"].split("/")[0]
               for reply in answers)
    assert answers[0].json()["model"] in ("gpt-test", "gpt-4o-mini")  # the upstream's own name, as it said
    assert metric(pooled, "sluice_failovers_total", model="gpt", deployment="a/gpt-test", reason="http_500") == 2
    assert len(first.state.requests) == 2 + who.count("a/gpt-test")


def test_a_client_error_is_answered_as_it_is_never_sent_elsewhere(
        upstreams: tuple[Starlette, Starlette], pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script.append(Error(400, "bad value", code="invalid_value"))
    second.state.script.append(Error(400, "bad value", code="invalid_value"))
    reply = chat(pooled)
    assert reply.status_code == 400 and reply.json()["error"]["message"] == "bad value"
    assert len(first.state.requests) + len(second.state.requests) == 1


def test_every_deployment_failing_falls_back_to_the_next_model(
        upstreams: tuple[Starlette, Starlette], pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script.append(Error(503, "overloaded", type="server_error"))
    reply = chat(pooled, "lone")
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-sluice-deployment"] == "b/gpt-4o-mini"
    assert metric(pooled, "sluice_fallbacks_total", **{"from": "lone", "to": "backup", "reason": "http_503"}) == 1


def test_a_lone_deployment_with_a_fallback_cools_down_after_one_failure(
        upstreams: tuple[Starlette, Starlette], pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script.append(Hang())  # read timeout (0.5 s), then the fallback answers
    started = time.perf_counter()
    assert chat(pooled, "lone").status_code == 200
    assert time.perf_counter() - started >= 0.5
    reached = len(first.state.requests)
    started = time.perf_counter()
    replies = [chat(pooled, "lone") for _ in range(3)]
    assert time.perf_counter() - started < 0.5  # no timeout paid again: straight to the fallback
    assert [reply.headers["x-sluice-deployment"] for reply in replies] == ["b/gpt-4o-mini"] * 3
    assert len(first.state.requests) == reached


def test_no_second_answer_once_a_stream_has_started(upstreams: tuple[Starlette, Starlette],
                                                    pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script.append(Stream([chat_chunk("par"), chat_chunk("tial")], then_reset=True))
    with pooled.stream("POST", "/v1/chat/completions",
                       json={"model": "lone", "messages": HELLO, "stream": True}) as reply:
        assert reply.status_code == 200 and reply.headers["x-sluice-deployment"] == "a/gpt-test"
        body = b"".join(reply.iter_bytes())
    assert b"par" in body and b'"error"' in body and b"[DONE]" not in body
    assert second.state.requests == []


def test_a_stream_that_fails_before_it_opens_falls_back(upstreams: tuple[Starlette, Starlette],
                                                        pooled: httpx.Client) -> None:
    first, second = upstreams
    first.state.script.append(Error(502, "bad gateway", type="server_error"))
    with pooled.stream("POST", "/v1/chat/completions",
                       json={"model": "lone", "messages": HELLO, "stream": True}) as reply:
        assert reply.status_code == 200 and reply.headers["x-sluice-deployment"] == "b/gpt-4o-mini"
        body = b"".join(reply.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")


def test_a_model_whose_every_deployment_is_down_answers_503_at_once(upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    config = providers(first, second).replace("failure_threshold: 3", "failure_threshold: 1") + """
models:
  - {name: gpt, deployments: [{provider: a, model: gpt-test}, {provider: b, model: gpt-test}]}
request_log: {enabled: false}
"""
    first.state.script.append(Error(500, "down", type="server_error"))
    second.state.script.append(Error(500, "down", type="server_error"))
    with run_gateway(config) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        assert chat(client).status_code == 500  # both tried, both failed: the last upstream error
        started = time.perf_counter()
        refused = chat(client)
        assert time.perf_counter() - started < 0.2
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_circuit_open"
    assert "retry-after" in refused.headers
    assert len(first.state.requests) + len(second.state.requests) == 2


MOCKS = """
providers:
  m1: {type: mock}
  m2: {type: mock, latency_ms: 40}
  m3: {type: mock}
models:
"""


def test_weighted_split_follows_the_weights_over_1000_requests() -> None:
    config = MOCKS + """  - name: w
    strategy: weighted
    deployments: [{provider: m1, model: x, weight: 3}, {provider: m3, model: y, weight: 1}]
request_log: {enabled: false}
"""
    with run_gateway(config) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        who = Counter(chat(client, "w").headers["x-sluice-deployment"] for _ in range(1000))
    assert who == {"m1/x": 750, "m3/y": 250}  # smooth weighted round-robin is exact over whole windows


@pytest.mark.anyio
async def test_latency_strategy_prefers_the_fast_deployment() -> None:
    config = MOCKS + """  - name: l
    strategy: latency
    deployments: [{provider: m1, model: fast}, {provider: m2, model: slow}]
request_log: {enabled: false}
"""
    with run_gateway(config) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
            who = Counter()
            for _ in range(60):
                reply = await client.post("/v1/chat/completions", json={"model": "l", "messages": HELLO})
                who[reply.headers["x-sluice-deployment"]] += 1
    assert who["m1/fast"] >= 45, who


@pytest.mark.anyio
async def test_least_busy_sends_to_the_free_deployment(upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    config = providers(first, second).replace("read: 0.5", "read: 5") + """
models:
  - {name: gpt, strategy: least_busy, deployments: [{provider: a, model: gpt-test}, {provider: b, model: gpt-test}]}
request_log: {enabled: false}
"""
    body = {"model": "gpt", "messages": HELLO}
    with run_gateway(config) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
            first.state.script.append(Delay(1.0))
            second.state.script.append(Delay(1.0))
            held = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            await asyncio.sleep(0.3)  # one slow call in flight on whichever deployment took it
            busy, free = (first, second) if first.state.requests else (second, first)
            free.state.script.clear()
            replies = [await client.post("/v1/chat/completions", json=body) for _ in range(3)]
            assert (await held).status_code == 200
    assert len(busy.state.requests) == 1 and len(free.state.requests) == 3
    assert len({reply.headers["x-sluice-deployment"] for reply in replies}) == 1


def test_each_hop_is_in_the_request_log(upstreams: tuple[Starlette, Starlette]) -> None:
    first, second = upstreams
    config = providers(first, second) + """
models:
  - {name: lone, provider: a, model: gpt-test, fallbacks: [backup]}
  - {name: backup, provider: b, model: gpt-4o-mini}
"""
    first.state.script.append(Error(503, "overloaded", type="server_error"))
    admin = "sk-admin-routing"
    with run_gateway(config, admin_key=admin) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        assert chat(client, "lone").status_code == 200
        assert chat(client, "lone").status_code == 200
        deadline = time.monotonic() + 10
        while True:
            entries = client.get("/admin/logs", headers={"Authorization": f"Bearer {admin}"}).json()["data"]
            if len(entries) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    second_call, first_call = entries[0], entries[1]
    assert first_call["routing"]["hops"] == [{"deployment": "a/gpt-test", "error": "http_503"},
                                             {"from": "lone", "fallback": "backup", "reason": "http_503"}]
    assert first_call["provider"] == {"name": "b", "model_requested": "lone", "model_resolved": "gpt-4o-mini"}
    assert second_call["routing"]["hops"] == [{"from": "lone", "fallback": "backup", "reason": "breaker_open"}]


def test_a_failing_deployment_with_another_to_go_to_is_not_retried_first(
        upstreams: tuple[Starlette, Starlette]) -> None:
    """Its own retries would wait out a backoff; the other deployment answers at once."""
    first, second = upstreams
    config = providers(first, second).replace(
        "retries: {attempts: 0}", "retries: {attempts: 2, backoff_initial_seconds: 0.5, backoff_max_seconds: 1}") + """
models:
  - {name: gpt, strategy: weighted, deployments: [{provider: a, model: gpt-test}, {provider: b, model: gpt-test}]}
  - {name: lone, provider: a, model: gpt-test}
request_log: {enabled: false}
"""
    with run_gateway(config) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        first.state.script.append(Error(503, "busy", type="server_error"))
        started = time.perf_counter()
        reply = chat(client)  # equal weights: a first
        assert reply.status_code == 200 and reply.headers["x-sluice-deployment"] == "b/gpt-test"
        assert time.perf_counter() - started < 0.25  # straight to the other deployment, no backoff paid
        assert len(first.state.requests) == len(second.state.requests) == 1
        first.state.script.append(Error(503, "busy", type="server_error"))
        started = time.perf_counter()
        assert chat(client, "lone").status_code == 200  # alone: its own retry, after the backoff
        assert time.perf_counter() - started >= 0.25
        assert len(first.state.requests) == 3
