"""OpenAI clients talking to AWS Bedrock's Converse API through Sluice: signed calls, streams, tools, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.bedrock import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    ErrorReply,
    StreamReply,
    create_fake_bedrock,
    event_message,
    exception,
    response,
    stream_events,
    tool_use,
    usage,
)
from tests.servers import serve

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CONFIG = """
providers:
  aws:
    type: bedrock
    region: {region}
    access_key_id: {key_id}
    secret_access_key: "{secret}"
    base_url: "{url}"
    retries: {{attempts: 0}}
models:
  - {{name: claude, provider: aws, model: "{model}"}}
"""
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: Any = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                  "parameters": CITY}}]
ASK: Any = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
def upstream() -> Iterator[tuple[Starlette, str]]:
    app = create_fake_bedrock()
    with serve(app) as url:
        yield app, url


def gateway(url: str, secret: str = SECRET_ACCESS_KEY) -> Any:
    return run_gateway(CONFIG.format(region=REGION, key_id=ACCESS_KEY_ID, secret=secret, url=url, model=MODEL_ID))


@pytest.fixture
def sluice_url(upstream: tuple[Starlette, str]) -> Iterator[str]:
    with gateway(upstream[1]) as url:
        yield url


@pytest.fixture
def sluice(sluice_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=sluice_url + "/v1", api_key=DEV_KEY, max_retries=0)


def test_chat_is_signed_and_translated_both_ways(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    reply = sluice.chat.completions.create(
        model="claude", temperature=0.2, top_p=0.9, max_tokens=77, stop="END",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you?"}],
    )
    assert reply.choices[0].message.content == "echo: how are you?"
    assert reply.choices[0].finish_reason == "stop" and reply.model == MODEL_ID
    assert reply.usage is not None and reply.usage.total_tokens == reply.usage.prompt_tokens + \
        reply.usage.completion_tokens > 0
    sent = app.state.requests[-1]
    assert (sent.model, sent.operation) == (MODEL_ID, "converse")
    assert sent.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    assert DEV_KEY not in str(sent.headers) and DEV_KEY not in str(sent.body)
    assert sent.body["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]
    assert sent.body["inferenceConfig"] == {"maxTokens": 77, "temperature": 0.2, "topP": 0.9,
                                            "stopSequences": ["END"]}


def test_stream_is_reassembled_with_usage(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(StreamReply(stream_events(response("Hello from Bedrock", meta=usage(4, 6, cache_read=3)),
                                                      chunks=4)))
    chunks = list(sluice.chat.completions.create(model="claude", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert app.state.requests[-1].operation == "converse-stream"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Bedrock"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 6)
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3


def test_tool_call_round_trip(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(response("Let me check.", tool_use("get_weather", {"city": "Paris"}), stop="tool_use"))
    first = sluice.chat.completions.create(model="claude", tools=WEATHER, tool_choice="required", messages=ASK)
    message = first.choices[0].message
    call = message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls" and message.content == "Let me check."
    assert call.id == "tooluse_fake0001" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = app.state.requests[-1].body
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                                                          "inputSchema": {"json": CITY}}}],
                                  "toolChoice": {"any": {}}}

    answer = sluice.chat.completions.create(model="claude", tools=WEATHER, messages=[
        *ASK, message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        {"role": "tool", "tool_call_id": "tooluse_other", "content": "also sunny"},
    ])
    assert answer.choices[0].message.content == "echo: sunny also sunny"  # the fake echoes the last user turn
    messages = app.state.requests[-1].body["messages"]
    assert messages[1] == {"role": "assistant", "content": [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_fake0001", "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert messages[2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_fake0001", "content": [{"text": "sunny"}]}},
        {"toolResult": {"toolUseId": "tooluse_other", "content": [{"text": "also sunny"}]}}]}


def test_streamed_tool_call(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    reply = response("Checking.", tool_use("get_weather", {"city": "Paris"}, "tooluse_a"),
                     tool_use("get_weather", {"city": "Oslo"}, "tooluse_b"), stop="tool_use")
    app.state.script.append(StreamReply(stream_events(reply, chunks=3)))
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    text, finish = "", None
    for chunk in sluice.chat.completions.create(model="claude", stream=True, tools=WEATHER,
                                                messages=[{"role": "user", "content": "Paris and Oslo?"}]):
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
            if call.id:
                ids[call.index], names[call.index] = call.id, call.function.name  # type: ignore[union-attr,assignment]
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Checking."
    assert {i: orjson.loads(a) for i, a in arguments.items()} == {0: {"city": "Paris"}, 1: {"city": "Oslo"}}
    assert ids == {0: "tooluse_a", 1: "tooluse_b"} and names == {0: "get_weather", 1: "get_weather"}
    assert finish == "tool_calls"


def test_throttling_is_a_rate_limit_error(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(ErrorReply("ThrottlingException", "Too many requests, please wait before trying again.",
                                       {"Retry-After": "3"}))
    with pytest.raises(openai.RateLimitError) as caught:
        sluice.chat.completions.create(model="claude", messages=ASK)
    assert "Too many requests" in caught.value.message
    assert caught.value.response.headers.get("retry-after") == "3"
    assert caught.value.code == "ThrottlingException"


def test_validation_error_is_a_bad_request(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(ErrorReply("ValidationException", "The model returned the following errors: bad."))
    with pytest.raises(openai.BadRequestError) as caught:
        sluice.chat.completions.create(model="claude", messages=ASK)
    assert "The model returned the following errors: bad." in caught.value.message


def test_exception_mid_stream_reaches_the_client(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(StreamReply([event_message("messageStart", {"role": "assistant"}),
                                         exception("throttlingException", "Too many tokens, slow down.")]))
    with pytest.raises(openai.APIError) as caught:
        list(sluice.chat.completions.create(model="claude", stream=True, messages=ASK))
    assert "Too many tokens, slow down." in caught.value.message


def test_stream_without_message_stop_is_an_error(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    events = [event for event in stream_events(response("cut short")) if event[0] not in ("messageStop", "metadata")]
    app.state.script.append(StreamReply(events))
    with pytest.raises(openai.APIError) as caught:
        list(sluice.chat.completions.create(model="claude", stream=True, messages=ASK))
    assert "before messageStop" in caught.value.message


def test_a_wrong_secret_key_is_refused_by_the_signature_check(upstream: tuple[Starlette, str]) -> None:
    app, url = upstream
    with gateway(url, secret="not-the-secret") as sluice_url:
        client = openai.OpenAI(base_url=sluice_url + "/v1", api_key=DEV_KEY, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="claude", messages=ASK)
    assert "signature we calculated does not match" in caught.value.message
    assert "secret_access_key" in caught.value.message  # the hint at what to check in the provider's config
    assert "not-the-secret" not in caught.value.message and "not-the-secret" not in str(app.state.requests[-1])


def test_image_urls_must_be_data_urls(sluice: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sluice.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "base64 data URL" in caught.value.message


def test_embeddings_are_refused(sluice: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sluice.embeddings.create(model="claude", input="hi")
    assert caught.value.code == "unsupported_operation"


def test_passthrough_is_refused_clearly(upstream: tuple[Starlette, str], sluice_url: str) -> None:
    app, _ = upstream
    reply = httpx.post(f"{sluice_url}/provider/aws/model/{MODEL_ID}/converse", json={"messages": []},
                       headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "passthrough_unsupported"
    assert "signed" in reply.json()["error"]["message"] and app.state.requests == []


def test_session_token_and_configured_headers_are_signed() -> None:
    app = create_fake_bedrock(session_token="FwoGZXIvYXdzEXAMPLE")
    with serve(app) as url:
        config = CONFIG.format(region=REGION, key_id=ACCESS_KEY_ID, secret=SECRET_ACCESS_KEY, url=url, model=MODEL_ID)
        config = config.replace("    retries:", "    session_token: FwoGZXIvYXdzEXAMPLE\n"
                                               "    headers: {X-Amz-Bedrock-Trace: ENABLED}\n    retries:")
        with run_gateway(config) as sluice_url:
            client = openai.OpenAI(base_url=sluice_url + "/v1", api_key=DEV_KEY, max_retries=0)
            completion = client.completions.create(model="claude", prompt="legacy prompt")
    assert completion.choices[0].text == "echo: legacy prompt"
    sent = app.state.requests[-1]
    assert sent.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLE"
    assert "x-amz-bedrock-trace;x-amz-date;x-amz-security-token" in sent.headers["authorization"]
