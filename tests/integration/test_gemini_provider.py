"""OpenAI clients talking to Gemini's native API through Sluice, and the Mistral, Groq and DeepSeek presets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from starlette.applications import Starlette

from sluice.config import parse_config
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.gemini import (
    FAKE_KEY,
    ErrorReply,
    StreamReply,
    bad_request,
    candidate,
    create_fake_gemini,
    embedding,
    function_call,
    rate_limited,
    response,
    stream_events,
    usage,
)
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

CONFIG = """
providers:
  google: {{type: gemini, base_url: "{url}", api_key: {key}, retries: {{attempts: 0}}}}
models:
  - {{name: gemini, provider: google, model: gemini-2.5-flash}}
  - {{name: gemini-embed, provider: google, model: gemini-embedding-001}}
"""
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}
WEATHER: Any = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                  "parameters": CITY}}]
ASK: Any = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
def upstream() -> Iterator[tuple[Starlette, str]]:
    app = create_fake_gemini()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def sluice(upstream: tuple[Starlette, str]) -> Iterator[openai.OpenAI]:
    with run_gateway(CONFIG.format(url=upstream[1], key=FAKE_KEY)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=DEV_KEY, max_retries=0)


def test_chat_is_translated_both_ways(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    reply = sluice.chat.completions.create(
        model="gemini", temperature=0.2, top_p=0.9, max_tokens=77, stop="END",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you?"}],
    )
    assert reply.choices[0].message.content == "echo: how are you?"
    assert reply.choices[0].finish_reason == "stop" and reply.model == "gemini-2.5-flash"
    assert reply.usage is not None and reply.usage.total_tokens == reply.usage.prompt_tokens + \
        reply.usage.completion_tokens > 0
    sent = app.state.requests[-1]
    assert (sent.model, sent.method) == ("gemini-2.5-flash", "generateContent")
    assert sent.headers["x-goog-api-key"] == FAKE_KEY and "key" not in sent.query
    assert DEV_KEY not in str(sent.headers)
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in sent.body["contents"]] == ["user", "model", "user"]
    assert sent.body["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 77,
                                             "stopSequences": ["END"]}


def test_stream_is_reassembled_with_usage(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(StreamReply(stream_events(response(candidate(["Hello from Gemini"]),
                                                               meta=usage(4, 6, thoughts=2)), chunks=4)))
    chunks = list(sluice.chat.completions.create(model="gemini", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert app.state.requests[-1].method == "streamGenerateContent" and app.state.requests[-1].query["alt"] == "sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Gemini"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 8)


def test_tool_call_round_trip(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(response(candidate([function_call("get_weather", {"city": "Paris"}, "c2ln")])))
    first = sluice.chat.completions.create(model="gemini", tools=WEATHER, tool_choice="required", messages=ASK)  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.id.startswith("call_") and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = app.state.requests[-1].body
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                                         "required": ["city"]}  # additionalProperties and $schema left out

    answer = sluice.chat.completions.create(model="gemini", tools=WEATHER, messages=[  # type: ignore[arg-type]
        *ASK, first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ])
    assert answer.choices[0].message.content is not None
    contents = app.state.requests[-1].body["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {
        "city": "Paris"}}, "thoughtSignature": "c2ln"}]}  # the signature came back through the SDK's message
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                           "response": {"output": "sunny"}}}]}


def test_streamed_parallel_tool_calls(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    calls = [function_call("get_weather", {"city": "Paris"}), function_call("get_weather", {"city": "Oslo"})]
    app.state.script.append(response(candidate(["Checking both.", *calls])))
    arguments: dict[int, str] = {}
    ids: dict[int, str] = {}
    finish = None
    for chunk in sluice.chat.completions.create(model="gemini", stream=True, tools=WEATHER,
                                                messages=[{"role": "user", "content": "Paris and Oslo?"}]):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            arguments[delta.index] = arguments.get(delta.index, "") + (delta.function.arguments or "")  # type: ignore[union-attr]
            ids[delta.index] = delta.id or ids.get(delta.index, "")
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert {i: orjson.loads(a) for i, a in arguments.items()} == {0: {"city": "Paris"}, 1: {"city": "Oslo"}}
    assert len(set(ids.values())) == 2 and all(i.startswith("call_") for i in ids.values())
    assert finish == "tool_calls"


def test_two_choices(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    reply = sluice.chat.completions.create(model="gemini", n=2, messages=[{"role": "user", "content": "hi"}])
    assert [(c.index, c.message.content) for c in reply.choices] == [(0, "echo: hi #0"), (1, "echo: hi #1")]
    assert app.state.requests[-1].body["generationConfig"] == {"candidateCount": 2}
    texts: dict[int, str] = {}
    for chunk in sluice.chat.completions.create(model="gemini", n=2, stream=True,
                                                messages=[{"role": "user", "content": "yo"}]):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "echo: yo #0", 1: "echo: yo #1"}


def test_json_schema_response_format_is_sent_as_response_schema(upstream: tuple[Starlette, str],
                                                                 sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(response(candidate(['{"city": "Paris"}'])))
    reply = sluice.chat.completions.create(model="gemini", messages=ASK, response_format={
        "type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": CITY}})
    assert orjson.loads(reply.choices[0].message.content or "") == {"city": "Paris"}
    config = app.state.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                                        "required": ["city"]}


def test_embeddings(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    result = sluice.embeddings.create(model="gemini-embed", input=["one", "two"])  # the SDK asks for base64
    assert [item.embedding for item in result.data] == [embedding("one"), embedding("two")]
    floats = sluice.embeddings.create(model="gemini-embed", input="three", dimensions=4, encoding_format="float")
    assert floats.data[0].embedding == embedding("three", 4)
    sent = app.state.requests[-1]
    assert sent.method == "batchEmbedContents" and sent.model == "gemini-embedding-001"
    assert sent.body == {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [
        {"text": "three"}]}, "outputDimensionality": 4}]}


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limit_is_a_rate_limit_error_with_retry_after(upstream: tuple[Starlette, str], sluice: openai.OpenAI,
                                                            stream: bool) -> None:
    app, _ = upstream
    app.state.script.append(rate_limited(retry_delay="6.2s"))
    with pytest.raises(openai.RateLimitError) as caught:
        result = sluice.chat.completions.create(model="gemini", stream=stream, messages=ASK)
        list(result) if stream else None  # type: ignore[call-overload]
    assert caught.value.status_code == 429 and "Resource has been exhausted" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "7"


def test_bad_request_is_a_bad_request_error(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(bad_request("* GenerateContentRequest.contents: contents is not specified"))
    with pytest.raises(openai.BadRequestError, match="contents is not specified") as caught:
        sluice.chat.completions.create(model="gemini", messages=ASK)
    assert caught.value.status_code == 400


def test_error_event_mid_stream_raises_in_sdk(upstream: tuple[Starlette, str], sluice: openai.OpenAI) -> None:
    app, _ = upstream
    first = stream_events(response(candidate(["partial answer"])))[0]
    error = ErrorReply(503, "The model is overloaded.").body()
    app.state.script.append(StreamReply([first, error]))
    with pytest.raises(openai.APIError, match="overloaded"):
        list(sluice.chat.completions.create(model="gemini", stream=True, messages=ASK))


def test_stream_without_finish_reason_is_a_protocol_error(upstream: tuple[Starlette, str],
                                                          sluice: openai.OpenAI) -> None:
    app, _ = upstream
    app.state.script.append(StreamReply([{"candidates": [candidate(["cut"], finish=None)]}]))
    with pytest.raises(openai.APIError, match="before a finishReason"):
        list(sluice.chat.completions.create(model="gemini", stream=True, messages=ASK))


def test_legacy_completions_are_translated(sluice: openai.OpenAI) -> None:
    completion = sluice.completions.create(model="gemini", prompt="finish this")
    assert completion.object == "text_completion" and completion.choices[0].text == "echo: finish this"
    streamed = "".join(c.choices[0].text for c in sluice.completions.create(model="gemini", prompt="go", stream=True)
                       if c.choices)
    assert streamed == "echo: go"


# --- presets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "default"), [
    ("mistral", "https://api.mistral.ai/v1"),
    ("groq", "https://api.groq.com/openai/v1"),
    ("deepseek", "https://api.deepseek.com/v1"),
    ("gemini", "https://generativelanguage.googleapis.com"),
])
def test_presets_default_to_the_documented_base_url(kind: str, default: str) -> None:
    config = parse_config(f"providers:\n  p: {{type: {kind}, api_key: k}}\n", "test.yaml")
    assert config.providers["p"].base_url == default  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["mistral", "groq", "deepseek"])
def test_preset_answers_a_chat(kind: str) -> None:
    upstream = create_fake_openai(api_key="preset-key")
    with serve(upstream) as url, run_gateway(f"""
providers:
  p: {{type: {kind}, base_url: "{url}/v1", api_key: preset-key}}
models:
  - {{name: m, provider: p, model: gpt-test}}
""") as gateway:
        client = openai.OpenAI(base_url=gateway + "/v1", api_key=DEV_KEY, max_retries=0)
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    assert upstream.state.requests[-1].headers["authorization"] == "Bearer preset-key"
