"""The official openai SDK against the fake OpenAI upstream: proof that the fake speaks the real wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionToolParam
from starlette.applications import Starlette

from tests.fakes.openai import (
    Delay,
    Error,
    Hang,
    RecordedRequest,
    Reply,
    Stream,
    chat_chunk,
    create_fake_openai,
    embedding_vector,
    usage_chunk,
)
from tests.servers import serve

KEY = "upstream-key"
HELLO: list[Any] = [{"role": "user", "content": "hello there world"}]
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": name, "strict": True, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
    for name in ("get_weather", "get_time")
]


@pytest.fixture
def fake() -> Starlette:
    return create_fake_openai()


@pytest.fixture
def url(fake: Starlette) -> Iterator[str]:
    with serve(fake) as base:
        yield base


@pytest.fixture
def sdk(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=10) as client:
        yield client


def last_request(app: Starlette) -> RecordedRequest:
    requests: list[RecordedRequest] = app.state.requests
    return requests[-1]


def test_chat_echoes_with_word_usage_and_records_the_request(sdk: openai.OpenAI, fake: Starlette) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-test", messages=HELLO, extra_body={"top_k": 3}, extra_headers={"traceparent": "00-ab-cd-01"})
    reply = raw.parse()
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-test"
    assert reply.choices[0].message.content == "echo: hello there world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (3, 4, 7)
    assert raw.headers["x-request-id"].startswith("req_") and int(raw.headers["openai-processing-ms"]) >= 0
    seen = last_request(fake)
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/chat/completions", {})
    assert seen.body == {"model": "gpt-test", "messages": HELLO, "top_k": 3}
    assert seen.headers["authorization"] == f"Bearer {KEY}" and seen.headers["traceparent"] == "00-ab-cd-01"


def test_stream_concatenates_and_ends_with_a_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len(chunks) > 4 and all(c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None and final.usage.total_tokens == 7


def test_streamed_tool_call_parses_with_the_stream_helper(sdk: openai.OpenAI) -> None:
    prompt = 'call get_weather {"city": "Paris"}'
    with sdk.chat.completions.stream(model="gpt-test", messages=[{"role": "user", "content": prompt}],
                                     tools=TOOLS) as stream:
        deltas = [e.chunk for e in stream if e.type == "chunk"]
        final = stream.get_final_completion()
    fragments = [tc for c in deltas for tc in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id and fragments[0].function and fragments[0].function.arguments == ""
    assert len(fragments) >= 3  # the opening fragment, then the arguments cut mid-JSON
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.parsed_arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_parallel_tool_calls_stream_and_non_stream(sdk: openai.OpenAI) -> None:
    prompt = 'call get_weather {"city": "Paris"} and get_time {"city": "Tokyo"}'
    messages: list[Any] = [{"role": "user", "content": prompt}]
    expected = [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"})]
    plain = sdk.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS)
    calls = plain.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls if c.type == "function"] == expected
    assert plain.choices[0].finish_reason == "tool_calls"
    accumulated: dict[int, dict[str, str]] = {}
    for chunk in sdk.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = accumulated.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function and delta.function.name:
                entry["name"] = delta.function.name
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert [(v["name"], json.loads(v["arguments"])) for _, v in sorted(accumulated.items())] == expected


def test_legacy_completions(sdk: openai.OpenAI) -> None:
    reply = sdk.completions.create(model="gpt-test", prompt="say hi")
    assert reply.object == "text_completion" and reply.choices[0].text == "echo: say hi"
    pieces = list(sdk.completions.create(model="gpt-test", prompt="say hi", stream=True))
    assert "".join(p.choices[0].text for p in pieces) == "echo: say hi"
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_embeddings_float_base64_and_lists(sdk: openai.OpenAI, fake: Starlette) -> None:
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [embedding_vector("a b"), embedding_vector("c")]
    assert floats.usage.prompt_tokens == 3
    assert last_request(fake).body["encoding_format"] == "float"
    packed = sdk.embeddings.create(model="text-embedding-3-small", input="a b", encoding_format="base64")
    assert isinstance(packed.data[0].embedding, str)
    default = sdk.embeddings.create(model="text-embedding-3-small", input="a b", dimensions=4)
    assert last_request(fake).body["encoding_format"] == "base64"  # the SDK asks for base64 and decodes it
    assert default.data[0].embedding == embedding_vector("a b", 4)


def test_models_list_and_unknown_paths(sdk: openai.OpenAI, url: str) -> None:
    assert [m.id for m in sdk.models.list()] == ["gpt-test", "gpt-4o-mini", "text-embedding-3-small"]
    assert sdk.models.retrieve("gpt-test").owned_by == "sluice-fake"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")
    reply = httpx.post(url + "/v1/nothing", json={})
    assert reply.status_code == 404 and reply.json()["error"]["message"] == "Invalid URL (POST /v1/nothing)"


def test_wrong_key_is_an_authentication_error(url: str) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="gpt-test", messages=HELLO)
    assert caught.value.code == "invalid_api_key"
    reply = httpx.get(url + "/v1/models")
    assert reply.status_code == 401 and reply.json()["error"]["type"] == "invalid_request_error"


def test_scripted_errors_and_replies(sdk: openai.OpenAI, fake: Starlette) -> None:
    fake.state.script += [
        Error(429, "Rate limit reached", "rate_limit_exceeded", "rate_limit_exceeded", headers={"retry-after": "1"}),
        Reply(200, {"id": "x", "object": "list", "data": []}, {"x-request-id": "req_scripted"}),
    ]
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="gpt-test", messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded" and caught.value.response.headers["retry-after"] == "1"
    raw = sdk.models.with_raw_response.list()
    assert raw.headers["x-request-id"] == "req_scripted" and list(raw.parse()) == []
    assert sdk.chat.completions.create(model="gpt-test", messages=HELLO).choices[0].message.content


def test_scripted_stream_and_reset(sdk: openai.OpenAI, fake: Starlette) -> None:
    chunks: list[dict[str, Any] | str] = [chat_chunk("", role="assistant"), ": keep-alive\n\n", chat_chunk("Hi"),
                                          chat_chunk(finish_reason="stop"), usage_chunk(1, 1)]
    fake.state.script += [Stream(chunks, delay=0.01), Stream(chunks[:2], then_reset=True)]
    got = list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))
    assert [c.choices[0].delta.content for c in got if c.choices] == ["", "Hi", None]
    assert got[-1].usage is not None and got[-1].usage.total_tokens == 2
    received = []
    with pytest.raises(openai.APIConnectionError):  # the SDK wraps the transport's incomplete-body error
        for chunk in sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True):
            received.append(chunk)
    assert len(received) == 1


def test_delay_and_hang_trip_client_timeouts(url: str, fake: Starlette) -> None:
    fake.state.script += [Delay(0.5), Hang()]
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=0.2) as client:
        for _ in range(2):
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-test", messages=HELLO)
    assert fake.state.script == [] and len(fake.state.requests) == 2


def test_azure_deployment_layout() -> None:
    app = create_fake_openai(azure=True)
    with serve(app) as url:
        client = openai.AzureOpenAI(azure_endpoint=url, api_version="2024-10-21", api_key=KEY, max_retries=0)
        with client:
            reply = client.chat.completions.create(model="my-gpt", messages=HELLO)
            assert reply.choices[0].message.content == "echo: hello there world" and reply.model == "my-gpt"
            seen = last_request(app)
            assert seen.path == "/openai/deployments/my-gpt/chat/completions" and seen.deployment == "my-gpt"
            assert seen.query == {"api-version": "2024-10-21"} and seen.headers["api-key"] == KEY
            streamed = client.chat.completions.create(model="my-gpt", messages=HELLO, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
            assert text == reply.choices[0].message.content
            vectors = client.embeddings.create(model="my-embed", input="a b")
            assert vectors.data[0].embedding == embedding_vector("a b")
        no_version = httpx.post(url + "/openai/deployments/my-gpt/chat/completions", json={}, headers={"api-key": KEY})
        assert no_version.status_code == 404
        with openai.AzureOpenAI(azure_endpoint=url, api_version="2024-10-21", api_key="bad", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                bad.chat.completions.create(model="my-gpt", messages=HELLO)
