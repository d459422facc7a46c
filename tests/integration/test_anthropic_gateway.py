"""OpenAI clients talking to Anthropic through Sluice: translation on the wire, both ways, streams included."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.anthropic import (
    ErrorReply,
    StreamReply,
    create_fake_anthropic,
    error_event,
    message,
    overloaded,
    rate_limited,
    text_stream,
    tool_stream,
)
from tests.servers import serve

CONFIG = """
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key: ant-secret, default_max_tokens: 321,
           retries: {{attempts: 0}}}}  # errors pass through as the upstream sent them (test_resilience retries)
  claude_new: {{type: anthropic, base_url: "{url}", api_key: ant-secret, api_version: "2026-10-21"}}
models:
  - {{name: claude, provider: claude, model: claude-fake-1}}
  - {{name: claude-new, provider: claude_new, model: claude-fake-1}}
"""
CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "parameters": CITY}}]


@pytest.fixture
def upstream() -> Iterator[tuple[Starlette, str]]:
    app = create_fake_anthropic(api_key="ant-secret")
    with serve(app) as url:
        yield app, url


@pytest.fixture
def sluice(upstream: tuple[Starlette, str]) -> Iterator[openai.OpenAI]:
    with run_gateway(CONFIG.format(url=upstream[1])) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=DEV_KEY, max_retries=0)


def test_chat_is_translated_both_ways(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    reply = sluice.chat.completions.create(
        model="claude", temperature=0.2, user="u-1", stop=["END"],
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you?"}],
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "echo: how are you?"
    assert reply.choices[0].finish_reason == "stop"
    usage = reply.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sent = app.state.requests[-1]
    assert sent.headers["x-api-key"] == "ant-secret" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers or DEV_KEY not in sent.headers["authorization"]
    assert sent.body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]
    assert sent.body["max_tokens"] == 321 and sent.body["temperature"] == 0.2
    assert sent.body["stop_sequences"] == ["END"] and sent.body["metadata"] == {"user_id": "u-1"}


def test_new_api_version_drops_sampling_parameters(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    sluice.chat.completions.create(model="claude-new", temperature=0.7, top_p=0.9,
                                   messages=[{"role": "user", "content": "hi"}])
    sent = app.state.requests[-1]
    assert sent.headers["anthropic-version"] == "2026-10-21"
    assert "temperature" not in sent.body and "top_p" not in sent.body


def test_tool_round_trip(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(message(None, tool_calls=[("toolu_1", "get_weather", {"city": "Paris"})]))
    first = sluice.chat.completions.create(model="claude", tools=WEATHER, tool_choice="required",  # type: ignore[arg-type]
                                           messages=[{"role": "user", "content": "weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.id == "toolu_1" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert app.state.requests[-1].body["tool_choice"] == {"type": "any"}
    assert app.state.requests[-1].body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}

    sluice.chat.completions.create(model="claude", tools=WEATHER, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "weather in Paris?"},
        first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ])
    turns = app.state.requests[-1].body["messages"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                      "input": {"city": "Paris"}}
    assert turns[2]["content"][0]["type"] == "tool_result" and turns[2]["content"][0]["tool_use_id"] == "toolu_1"


def test_image_parts_become_image_blocks(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    sluice.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}])
    image = app.state.requests[-1].body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def test_stream_text_with_usage(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(text_stream("Hello from Claude", chunks=4))
    chunks = list(sluice.chat.completions.create(model="claude", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Claude"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_parallel_tool_calls(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    calls = [("toolu_a", "get_weather", {"city": "Paris"}), ("toolu_b", "get_weather", {"city": "Oslo"})]
    app.state.script.append(tool_stream(calls, text_before="Checking both.", chunks=3))
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in sluice.chat.completions.create(model="claude", stream=True, tools=WEATHER,  # type: ignore[arg-type]
                                                messages=[{"role": "user", "content": "Paris and Oslo?"}]):
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
            if call.function and call.function.name:
                names[call.index] = call.function.name
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert names == {0: "get_weather", 1: "get_weather"}
    assert {i: orjson.loads(a) for i, a in arguments.items()} == {0: {"city": "Paris"}, 1: {"city": "Oslo"}}
    assert finish == "tool_calls"


def test_mid_stream_error_event_raises_in_sdk(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    events = text_stream("partial answer", chunks=3)
    app.state.script.append(StreamReply(events[:4] + [error_event("overloaded_error", "Overloaded")]))
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(sluice.chat.completions.create(model="claude", stream=True, messages=[{"role": "user", "content": "x"}]))


@pytest.mark.parametrize(
    ("reply", "exception", "status"),
    [
        (rate_limited(), openai.RateLimitError, 429),
        (overloaded(), openai.InternalServerError, 503),
        (ErrorReply(400, "invalid_request_error", "messages: too long"), openai.BadRequestError, 400),
    ],
)
def test_upstream_errors_keep_status_and_message(upstream: tuple[Starlette, str], sluice: openai.OpenAI,
                                                 reply: ErrorReply, exception: type[openai.APIStatusError],
                                                 status: int) -> None:
    app, _ = upstream
    for stream in (False, True):
        app.state.script.append(reply)
        with pytest.raises(exception) as caught:
            result = sluice.chat.completions.create(model="claude", stream=stream,
                                                    messages=[{"role": "user", "content": "x"}])
            list(result) if stream else None  # type: ignore[call-overload]
        assert caught.value.status_code == status
        assert reply.message in caught.value.message


def test_bad_tool_arguments_are_a_400_naming_the_field(upstream: tuple[Starlette, str]) -> None:
    with run_gateway(CONFIG.format(url=upstream[1])) as url:
        reply = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"}, json={
            "model": "claude", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
                                                      "function": {"name": "f", "arguments": "{not json"}}]},
                {"role": "tool", "tool_call_id": "t", "content": "r"}]})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


def test_embeddings_are_refused_clearly(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="does not offer embeddings"):
        sluice.embeddings.create(model="claude", input="x")


def test_legacy_completions_are_translated(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    completion = sluice.completions.create(model="claude", prompt="finish this")
    assert completion.object == "text_completion" and completion.choices[0].text == "echo: finish this"
    streamed = "".join(c.choices[0].text for c in sluice.completions.create(model="claude", prompt="go", stream=True)
                       if c.choices)
    assert streamed == "echo: go"
