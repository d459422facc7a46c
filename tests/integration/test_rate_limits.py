"""Rate limits through a real gateway, the same suite on both limiter backends (memory, Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette

from tests.conftest import run_gateway
from tests.fakes.openai import Reply, create_fake_openai, usage
from tests.limits_support import BACKENDS, Backend, backend_named
from tests.servers import serve

HELLO = [{"role": "user", "content": "hello"}]
KEY_A, KEY_B = "sk-limit-a", "sk-limit-b"


def config(backend: Backend, *, limits: str = "", key_limits: str = "", model_limits: str = "",
           mock: str = "{type: mock}", upstream: str | None = None) -> str:
    model_extra = f", limits: {{{model_limits}}}" if model_limits else ""
    key_extra = f", limits: {{{key_limits}}}" if key_limits else ""
    up = f'  up: {{type: openai, base_url: "{upstream}/v1", api_key: upstream-key}}' if upstream else ""
    up_model = "  - {name: gpt-test, provider: up, model: gpt-test}" if upstream else ""
    return f"""
providers:
  mock: {mock}
{up}
models:
  - {{name: mock, provider: mock, model: mock-1{model_extra}}}
{up_model}
limits: {{{backend.yaml}{', ' + limits if limits else ''}}}
static_keys:
  - {{key: {KEY_A}, name: key-a{key_extra}}}
  - {{key: {KEY_B}, name: key-b{key_extra}}}
request_log: {{enabled: false}}
metrics: {{require_key: false}}
projects:
  - {{name: demo, module: sluice.projects.demo}}
discover_projects: false
"""


def chat(url: str, key: str | None = KEY_A, model: str = "mock", **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=10,
                      json={"model": model, "messages": HELLO, **body})


def wait_for_status(send: Any, status: int, timeout: float = 2.0) -> httpx.Response:
    """`send()` until it answers `status` (a slot released in the background may take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        reply: httpx.Response = send()
        if reply.status_code == status or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with backend_named(request.param) as chosen:
        yield chosen


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    with serve(app) as url:
        app.state.url = url
        yield app


# --- requests per minute and the headers ------------------------------------------------------------------------


def test_rpm_allows_n_then_429_with_retry_after_and_headers(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="requests_per_minute: 3"), **backend.settings) as url:
        replies = [chat(url) for _ in range(3)]
        refused = chat(url)
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    first = replies[0].headers
    assert first["ratelimit-policy"] == '"key";q=3;w=60'
    assert first["ratelimit"] == '"key";r=2;t=20'
    assert (first["x-ratelimit-limit"], first["x-ratelimit-remaining"], first["x-ratelimit-reset"]) == ("3", "2", "20")
    assert replies[2].headers["x-ratelimit-remaining"] == "0"
    assert 58 <= int(replies[2].headers["x-ratelimit-reset"]) <= 60
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["ratelimit"].startswith('"key";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"key";q=3;w=60'
    assert refused.headers["x-ratelimit-remaining"] == "0"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "3 requests per minute" in error["message"]


def test_keys_are_limited_separately_and_unlimited_keys_get_no_headers(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="requests_per_minute: 1"), keys=("sk-plain",),
                     **backend.settings) as url:
        assert chat(url, KEY_A).status_code == 200
        assert chat(url, KEY_B).status_code == 200
        assert chat(url, KEY_A).status_code == 429
        plain = chat(url, "sk-plain")
    assert plain.status_code == 200 and "ratelimit" not in plain.headers


def test_the_openai_sdk_sees_a_rate_limit_error(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="requests_per_minute: 1"), **backend.settings) as url:
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=KEY_A, max_retries=0)
        sdk.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="mock", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"


def test_model_limit_is_shared_by_every_key(backend: Backend) -> None:
    with run_gateway(config(backend, model_limits="requests_per_minute: 2"), **backend.settings) as url:
        assert chat(url, KEY_A).status_code == 200
        assert chat(url, KEY_B).headers["ratelimit"] == '"model";r=0;t=60'
        refused = chat(url, KEY_A)
    assert refused.status_code == 429
    assert refused.headers["ratelimit"].startswith('"model";r=0;')
    assert "model 'mock'" in refused.json()["error"]["message"]


def test_the_tightest_policy_is_reported(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="requests_per_minute: 100", model_limits="requests_per_minute: 4"),
                     **backend.settings) as url:
        reply = chat(url)
    assert reply.headers["ratelimit-policy"] == '"key";q=100;w=60, "model";q=4;w=60'
    assert reply.headers["ratelimit"] == '"model";r=3;t=15'
    assert reply.headers["x-ratelimit-limit"] == "4"


def test_per_ip_limit_applies_before_authentication(backend: Backend) -> None:
    with run_gateway(config(backend, limits="per_ip: {requests_per_minute: 2}"), **backend.settings) as url:
        statuses = [chat(url, key=None).status_code for _ in range(2)]
        refused = chat(url, key=None)
        with_key = chat(url, KEY_A)
    assert statuses == [401, 401]
    assert refused.status_code == 429 and refused.headers["ratelimit"].startswith('"ip";r=0;')
    assert with_key.status_code == 429  # same address, whatever the key


def test_forwarded_address_is_used_only_from_a_trusted_proxy(backend: Backend) -> None:
    limits = "per_ip: {requests_per_minute: 1}, trusted_proxies: ['127.0.0.0/8']"
    with run_gateway(config(backend, limits=limits), **backend.settings) as url:
        def from_(address: str) -> int:
            return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY_A}",
                              "X-Forwarded-For": address}, json={"model": "mock", "messages": HELLO}).status_code
        assert [from_("203.0.113.7"), from_("203.0.113.8"), from_("203.0.113.7")] == [200, 200, 429]


# --- concurrency ------------------------------------------------------------------------------------------------


def test_concurrency_slot_is_held_for_the_call_and_released(backend: Backend) -> None:
    text = config(backend, key_limits="max_concurrent: 1", mock="{type: mock, latency_ms: 600}")
    with run_gateway(text, **backend.settings) as url:
        results: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: results.append(chat(url)))
        slow.start()
        time.sleep(0.25)
        refused = chat(url)
        slow.join()
        after = wait_for_status(lambda: chat(url), 200)
    assert results[0].status_code == 200
    assert results[0].headers["ratelimit-policy"] == '"key-concurrency";q=1;qu="concurrent-requests"'
    assert refused.status_code == 429 and refused.headers["ratelimit"].startswith('"key-concurrency";r=0')
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert after.status_code == 200


def test_stream_holds_its_slot_until_the_client_cuts_it(backend: Backend) -> None:
    text = config(backend, key_limits="max_concurrent: 1", mock="{type: mock, chunks: 50, chunk_delay_ms: 100}")
    with run_gateway(text, **backend.settings) as url, httpx.Client(timeout=10) as http:
        with http.stream("POST", f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY_A}"},
                         json={"model": "mock", "stream": True,
                               "messages": [{"role": "user", "content": "word " * 100}]}) as stream:
            assert stream.status_code == 200
            chunks = stream.iter_raw()
            next(chunks)
            assert chat(url).status_code == 429
            chunks.close()
        after = wait_for_status(lambda: chat(url), 200)
    assert after.status_code == 200


# --- tokens -----------------------------------------------------------------------------------------------------


def test_tokens_are_charged_from_the_reported_usage(backend: Backend, upstream: Starlette) -> None:
    text = config(backend, key_limits="tokens_per_minute: 1000", upstream=upstream.state.url)
    big = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "long"}, "finish_reason": "stop"}],
           "usage": usage(900, 2100)}
    with run_gateway(text, **backend.settings) as url:
        small = chat(url, model="gpt-test", max_tokens=5)
        upstream.state.script.append(Reply(200, big))
        assert chat(url, model="gpt-test", max_tokens=5).status_code == 200
        refused = wait_for_status(lambda: chat(url, model="gpt-test", max_tokens=5), 429)
    assert small.status_code == 200
    assert small.headers["ratelimit-policy"] == '"key-tokens";q=1000;qu="tokens";w=60'
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert int(refused.headers["retry-after"]) > 60  # 3000 tokens against 1000 a minute: two more minutes


def test_a_small_reply_refunds_the_estimate(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="tokens_per_minute: 600"), **backend.settings) as url:
        replies = [chat(url, max_tokens=500) for _ in range(4)]  # estimate ~500 each, real usage ~20
    assert [reply.status_code for reply in replies] == [200] * 4


# --- other routes -----------------------------------------------------------------------------------------------


def test_passthrough_is_limited_per_key(backend: Backend, upstream: Starlette) -> None:
    text = config(backend, key_limits="requests_per_minute: 1", upstream=upstream.state.url)
    with run_gateway(text, **backend.settings) as url:
        def models() -> httpx.Response:
            return httpx.get(f"{url}/provider/up/models", headers={"Authorization": f"Bearer {KEY_A}"})
        first, second = models(), models()
    assert first.status_code == 200 and first.headers["ratelimit"] == '"key";r=0;t=60'
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"


def test_project_routes_are_limited_per_key(backend: Backend) -> None:
    with run_gateway(config(backend, key_limits="requests_per_minute: 1"), **backend.settings) as url:
        def summary() -> httpx.Response:
            return httpx.post(f"{url}/projects/demo/summary", json={"text": "Rate limits keep a gateway fair."},
                              headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10)
        first, second = summary(), summary()
    assert first.status_code == 200 and first.headers["ratelimit"] == '"key";r=0;t=60'
    assert second.status_code == 429 and "retry-after" in second.headers
    assert second.json()["error"]["code"] == "rate_limit_exceeded"


def test_models_route_is_limited_per_key_and_admin_routes_per_address(backend: Backend) -> None:
    text = config(backend, key_limits="requests_per_minute: 1", limits="per_ip: {requests_per_minute: 4}")
    with run_gateway(text, admin_key="admin-limits", **backend.settings) as url:
        def models() -> httpx.Response:
            return httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10)
        first, second = models(), models()
        guesses = [httpx.get(f"{url}/admin/keys", headers={"Authorization": f"Bearer guess-{n}"}, timeout=10)
                   for n in range(4)]
    assert first.status_code == 200 and first.headers["ratelimit"].startswith('"key";r=0;')
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    assert [reply.status_code for reply in guesses] == [401, 401, 429, 429]  # the address's 4: 2 models, 2 guesses
    assert guesses[-1].headers["ratelimit"].startswith('"ip";r=0;') and "retry-after" in guesses[-1].headers
