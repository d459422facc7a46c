"""OpenAI-compatible and Azure upstreams through Sluice: pass-through, streams, errors, timeouts, cancellation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Delay, Error, Hang, Stream, chat_chunk, create_fake_openai
from tests.servers import free_port, serve

CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key, timeout: {{connect: 1, read: 1}},
       retries: {{attempts: 0}}}}  # errors pass through as the upstream sent them (test_resilience retries)
  az: {{type: azure, base_url: "{azure}", api_key: upstream-key, api_version: "2024-10-21"}}
  down: {{type: openai, base_url: "http://127.0.0.1:{closed}/v1"}}
models:
  - {{name: gpt-test, provider: up, model: gpt-test}}
  - {{name: renamed, provider: up, model: gpt-upstream-name}}
  - {{name: azure-gpt, provider: az, model: my-deployment}}
  - {{name: nowhere, provider: down, model: x}}
"""
HELLO = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    azure = create_fake_openai(azure=True)
    with serve(app) as url, serve(azure) as azure_url:
        app.state.url, app.state.azure = url, azure
        azure.state.url = azure_url
        yield app


@pytest.fixture
def sluice_url(upstream: Starlette) -> Iterator[str]:
    config = CONFIG.format(url=upstream.state.url, azure=upstream.state.azure.state.url, closed=free_port())
    with run_gateway(config) as url:
        yield url


@pytest.fixture
def sdk(sluice_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=sluice_url + "/v1", api_key=DEV_KEY, max_retries=0)


def test_unknown_fields_and_bytes_pass_through(upstream: Starlette, sluice_url: str) -> None:
    body = {"model": "gpt-test", "messages": HELLO, "vendor_extension": {"top_k": 5}, "seed": 7}
    reply = httpx.post(sluice_url + "/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {DEV_KEY}", "X-Request-ID": "rid-1",
                                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "echo: hello"
    sent = upstream.state.requests[-1]
    assert sent.body == body
    assert sent.headers["authorization"] == "Bearer upstream-key"
    assert sent.headers["x-request-id"] == "rid-1"
    assert sent.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")


def test_model_is_renamed_for_the_upstream(upstream: Starlette, sdk: openai.OpenAI) -> None:
    sdk.chat.completions.create(model="renamed", messages=HELLO)  # type: ignore[arg-type]
    assert upstream.state.requests[-1].body["model"] == "gpt-upstream-name"


def test_stream_text_and_usage_via_sdk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


@pytest.mark.parametrize("prompt", ['call get_weather {"city":"Paris"}',
                                    'call get_weather {"city":"Paris"} and get_weather {"city":"Oslo"}'])
def test_stream_tool_calls_one_and_parallel(sdk: openai.OpenAI, prompt: str) -> None:
    arguments: dict[int, str] = {}
    for chunk in sdk.chat.completions.create(model="gpt-test", stream=True, tools=TOOLS,  # type: ignore[arg-type]
                                             messages=[{"role": "user", "content": prompt}]):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
    expected = [{"city": "Paris"}, {"city": "Oslo"}][: prompt.count("get_weather")]
    assert [orjson.loads(arguments[i]) for i in sorted(arguments)] == expected


def test_azure_uses_deployment_url_version_and_api_key(upstream: Starlette, sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="azure-gpt", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "echo: hello"
    sent = upstream.state.azure.state.requests[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query["api-version"] == "2024-10-21" and sent.headers["api-key"] == "upstream-key"
    streamed = sdk.chat.completions.create(model="azure-gpt", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "echo: hello"
    embedding = sdk.embeddings.create(model="azure-gpt", input="x")
    assert embedding.data and upstream.state.azure.state.requests[-1].path.endswith("/my-deployment/embeddings")


def test_embeddings_and_completions_pass_through(sdk: openai.OpenAI) -> None:
    assert len(sdk.embeddings.create(model="gpt-test", input=["a", "b"]).data) == 2
    assert sdk.completions.create(model="gpt-test", prompt="hi").choices[0].text


def test_upstream_error_keeps_status_and_message(upstream: Starlette, sdk: openai.OpenAI) -> None:
    upstream.state.script.append(Error(429, "Rate limit reached for gpt-test", "requests", "rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError, match="Rate limit reached for gpt-test") as caught:
        sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "rate_limit_exceeded"
    upstream.state.script.append(Error(500, "The server had an error", "server_error", None))
    with pytest.raises(openai.InternalServerError, match="The server had an error"):
        list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))  # type: ignore[arg-type]


def test_unreachable_upstream_is_502(sluice_url: str) -> None:
    reply = httpx.post(sluice_url + "/v1/chat/completions", json={"model": "nowhere", "messages": HELLO},
                       headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "upstream_unreachable"


def test_slow_upstream_is_504(upstream: Starlette, sluice_url: str) -> None:
    upstream.state.script.append(Delay(3))
    started = time.monotonic()
    reply = httpx.post(sluice_url + "/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO},
                       headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10)
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.5


def test_broken_stream_ends_with_error_event(upstream: Starlette, sdk: openai.OpenAI) -> None:
    upstream.state.script.append(Stream([chat_chunk(role="assistant", content=""), chat_chunk(content="par")],
                                        then_reset=True))
    with pytest.raises(openai.APIError, match="could not be reached|ended|timed out"):
        list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))  # type: ignore[arg-type]


def test_chunks_arrive_as_the_upstream_sends_them(upstream: Starlette, sluice_url: str) -> None:
    chunks = [chat_chunk(role="assistant", content="")] + [chat_chunk(content=str(i)) for i in range(5)]
    upstream.state.script.append(Stream(chunks, delay=0.2))
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream("POST", sluice_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                      json={"model": "gpt-test", "messages": HELLO, "stream": True}) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - started)
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) == 6
    assert all(gap > 0.12 for gap in gaps), gaps


def test_client_disconnect_cancels_the_upstream(upstream: Starlette, sluice_url: str) -> None:
    scripted = Stream([chat_chunk(role="assistant", content="")] + [chat_chunk(content="x")] * 100, delay=0.1)
    upstream.state.script.append(scripted)
    with httpx.stream("POST", sluice_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                      json={"model": "gpt-test", "messages": HELLO, "stream": True}) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                break
    deadline = time.monotonic() + 5
    while not scripted.abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted.abandoned


def test_hanging_upstream_times_out_not_hangs(upstream: Starlette, sluice_url: str) -> None:
    upstream.state.script.append(Hang())
    reply = httpx.post(sluice_url + "/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO,
                                                                   "stream": True},
                       headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10)
    assert reply.status_code == 504
