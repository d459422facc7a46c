"""Circuit breaker and retries against a real fake upstream: what the client, the upstream and /metrics see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Error, Stream, chat_chunk, create_fake_openai
from tests.fakes.tcp_proxy import TcpProxy
from tests.servers import serve

OPEN_SECONDS = 0.4
CONFIG = """
providers:
  up:
    type: openai
    base_url: "{url}/v1"
    api_key: upstream-key
    timeout: {{connect: 1, read: 2}}
    breaker: {{failure_threshold: 3, open_seconds: {open_seconds}}}
    retries: {{attempts: 0}}
  retrying:
    type: openai
    base_url: "{url}/v1"
    api_key: upstream-key
    breaker: {{enabled: false}}
    retries: {{attempts: 2, backoff_initial_seconds: 0.01, backoff_max_seconds: 0.05, max_retry_after_seconds: 1}}
models:
  - {{name: gpt-test, provider: up, model: gpt-test}}
  - {{name: retried, provider: retrying, model: gpt-test}}
"""
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]
Labels = tuple[tuple[str, str], ...]


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture
def sluice(upstream: Starlette) -> Iterator[httpx.Client]:
    config = CONFIG.format(url=upstream.state.url, open_seconds=OPEN_SECONDS)
    with run_gateway(config) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        yield client


def chat(client: httpx.Client, model: str = "gpt-test", **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, **extra})


def metrics(client: httpx.Client) -> dict[tuple[str, Labels], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def state(client: httpx.Client, provider: str = "up", deployment: str = "up/gpt-test") -> float:
    return metrics(client)[("sluice_circuit_breaker_state", (("deployment", deployment), ("provider", provider)))]


def transitions(client: httpx.Client, to: str, provider: str = "up", deployment: str = "up/gpt-test") -> float:
    labels = (("deployment", deployment), ("provider", provider), ("to", to))
    return metrics(client).get(("sluice_circuit_breaker_transitions_total", labels), 0)


def retries(client: httpx.Client, reason: str, provider: str = "retrying") -> float:
    return metrics(client).get(("sluice_upstream_retries_total", (("provider", provider), ("reason", reason))), 0)


def open_breaker(upstream: Starlette, client: httpx.Client) -> None:
    upstream.state.script += [Error(500, "boom", type="server_error")] * 3
    assert [chat(client).status_code for _ in range(3)] == [500, 500, 500]


def test_consecutive_500s_open_the_breaker_and_a_probe_closes_it(upstream: Starlette,
                                                                 sluice: httpx.Client) -> None:
    assert state(sluice) == 0
    open_breaker(upstream, sluice)
    reached = len(upstream.state.requests)

    started = time.perf_counter()
    refused = chat(sluice)
    elapsed = time.perf_counter() - started
    assert refused.status_code == 503 and elapsed < 0.05
    error = refused.json()["error"]
    assert error["code"] == "upstream_circuit_open" and error["type"] == "server_error"
    assert "'up/gpt-test'" in error["message"] and "try it again in" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert len(upstream.state.requests) == reached  # the upstream never saw it
    assert state(sluice) == 2 and transitions(sluice, "open") == 1

    time.sleep(OPEN_SECONDS + 0.05)
    probe = chat(sluice)
    assert probe.status_code == 200 and probe.json()["choices"][0]["message"]["content"] == "echo: hello"
    assert len(upstream.state.requests) == reached + 1
    assert state(sluice) == 0
    assert transitions(sluice, "half_open") == 1 and transitions(sluice, "closed") == 1


def test_a_failed_probe_opens_the_breaker_again(upstream: Starlette, sluice: httpx.Client) -> None:
    open_breaker(upstream, sluice)
    time.sleep(OPEN_SECONDS + 0.05)
    upstream.state.script.append(Error(502, "bad gateway", type="server_error"))
    assert chat(sluice).status_code == 502  # the probe reached the upstream and failed
    assert chat(sluice).json()["error"]["code"] == "upstream_circuit_open"
    assert state(sluice) == 2 and transitions(sluice, "open") == 2


def test_a_success_resets_the_count_of_consecutive_failures(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script += [Error(500, "boom", type="server_error")] * 2
    assert [chat(sluice).status_code for _ in range(2)] == [500, 500]
    assert chat(sluice).status_code == 200
    upstream.state.script += [Error(500, "boom", type="server_error")] * 2
    assert [chat(sluice).status_code for _ in range(2)] == [500, 500]
    assert state(sluice) == 0


def test_4xx_never_counts_as_a_failure_and_is_never_retried(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script += [Error(400, "bad", code="invalid_value")] * 5
    assert [chat(sluice).status_code for _ in range(5)] == [400] * 5
    assert state(sluice) == 0 and transitions(sluice, "open") == 0

    reached = len(upstream.state.requests)
    upstream.state.script += [Error(400, "bad"), Error(404, "missing"),
                              Error(429, "slow down", headers={"Retry-After": "30"}), Error(429, "no quota")]
    assert [chat(sluice, "retried").status_code for _ in range(4)] == [400, 404, 429, 429]
    assert len(upstream.state.requests) == reached + 4  # one try each: a 429 over the cap or not saying when
    assert metrics(sluice).get(("sluice_upstream_retries_total", (("provider", "retrying"), ("reason", "http_429")))
                               ) is None


def test_a_503_then_200_gives_the_client_a_200_after_one_retry(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script.append(Error(503, "overloaded", type="server_error"))
    reached = len(upstream.state.requests)
    reply = chat(sluice, "retried")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "echo: hello"
    assert len(upstream.state.requests) == reached + 2
    assert retries(sluice, "http_503") == 1


def test_a_429_is_retried_after_its_retry_after(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script.append(Error(429, "slow down", type="requests", headers={"Retry-After": "0.2"}))
    started = time.perf_counter()
    assert chat(sluice, "retried").status_code == 200
    assert time.perf_counter() - started >= 0.2
    assert retries(sluice, "http_429") == 1


def test_retries_are_bounded(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script += [Error(502, "down", type="server_error")] * 4
    reached = len(upstream.state.requests)
    reply = chat(sluice, "retried")
    assert reply.status_code == 502 and reply.json()["error"]["message"] == "down"
    assert len(upstream.state.requests) == reached + 3  # the try and 2 retries
    assert retries(sluice, "http_502") == 2


def test_a_stream_that_fails_before_its_first_chunk_is_retried(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script.append(Error(503, "overloaded", type="server_error"))
    reply = chat(sluice, "retried", stream=True)
    assert reply.status_code == 200
    assert '"content":"echo: "' in reply.text and reply.text.endswith("data: [DONE]\n\n")
    assert retries(sluice, "http_503") == 1


def test_a_stream_that_fails_after_its_first_chunk_is_not_retried(upstream: Starlette,
                                                                  sluice: httpx.Client) -> None:
    upstream.state.script.append(Stream([chat_chunk("", role="assistant"), chat_chunk("Hel")], then_reset=True))
    reached = len(upstream.state.requests)
    reply = chat(sluice, "retried", stream=True)
    assert reply.status_code == 200
    events = [block for block in reply.text.split("\n\n") if block]
    assert '"content":"Hel"' in events[1]
    assert events[-1].startswith('data: {"error":')  # the SSE error event, after the relayed chunk
    assert len(upstream.state.requests) == reached + 1
    assert not any(name == "sluice_upstream_retries_total" for name, _ in metrics(sluice))


def test_the_openai_sdk_sees_a_503_for_an_open_circuit(upstream: Starlette, sluice: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=str(sluice.base_url).rstrip("/") + "/v1", api_key=DEV_KEY, max_retries=0)
    open_breaker(upstream, sluice)  # after the client is built: the breaker stays open for OPEN_SECONDS only
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code == 503
    assert raised.value.code == "upstream_circuit_open"


def test_passthrough_counts_5xx_and_is_refused_while_open(upstream: Starlette, sluice: httpx.Client) -> None:
    upstream.state.script += [Error(500, "boom", type="server_error")] * 4
    path = "/provider/up/chat/completions"  # base_url ends in /v1
    body = {"model": "gpt-test", "messages": HELLO}
    assert [sluice.post(path, json=body).status_code for _ in range(3)] == [500, 500, 500]
    reached = len(upstream.state.requests)
    refused = sluice.post(path, json=body)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_circuit_open"
    assert "'up'" in refused.json()["error"]["message"]
    assert len(upstream.state.requests) == reached
    assert state(sluice, deployment="") == 2 and state(sluice) == 0
    assert chat(sluice).status_code == 500  # the model's deployment has a breaker of its own, still closed
    assert len(upstream.state.requests) == reached + 1


@pytest.mark.anyio
async def test_connection_failures_open_the_breaker_until_the_upstream_is_back(upstream: Starlette) -> None:
    host, port = upstream.state.url.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    config = CONFIG.format(url=f"http://127.0.0.1:{proxy.port}", open_seconds=OPEN_SECONDS)
    body = {"model": "gpt-test", "messages": HELLO}
    with run_gateway(config) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
            codes = [(await client.post("/v1/chat/completions", json=body)).json()["error"]["code"]
                     for _ in range(4)]
            assert codes == ["upstream_unreachable"] * 3 + ["upstream_circuit_open"]
            await proxy.up()
            try:
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 503
                await anyio.sleep(OPEN_SECONDS + 0.05)
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            finally:
                await proxy.down()
