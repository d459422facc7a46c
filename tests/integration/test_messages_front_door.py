"""`POST /v1/messages` with the official `anthropic` SDK: translated to an OpenAI-format deployment (the mock) and
back, and relayed byte for byte from an Anthropic deployment; errors as the SDK's exception types; the request log
and usage of both kinds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.anthropic import (
    RawReply,
    StreamReply,
    create_fake_anthropic,
    encoded,
    message,
    message_events,
    overloaded,
    tool_stream,
)
from tests.servers import serve

ADMIN = "sk-admin-messages"
CONFIG = """
providers:
  mock: {{type: mock}}
  claude: {{type: anthropic, base_url: "{url}", api_key: ant-secret, retries: {{attempts: 0}}}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: claude, provider: claude, model: claude-fake-1}}
request_log: {{flush_interval_seconds: 0.05}}
"""
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app = create_fake_anthropic(api_key="ant-secret")
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture
def gateway(upstream: Starlette, tmp_path: Path) -> Iterator[str]:
    with run_gateway(CONFIG.format(url=upstream.state.url), data_dir=str(tmp_path), admin_key=ADMIN) as url:
        yield url


@pytest.fixture
def client(gateway: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key=DEV_KEY, max_retries=0)


def _log_entries(gateway: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20  # the writer is a process of its own: slow to start on a loaded machine
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        while True:
            data: list[dict[str, Any]] = admin.get("/admin/logs", params={"include_bodies": "true"}).json()["data"]
            if len(data) >= count or time.monotonic() > deadline:
                return data
            time.sleep(0.05)


def test_a_message_to_an_openai_format_deployment_is_translated(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(model="mock", max_tokens=100, system="Be brief.",
                                   messages=[{"role": "user", "content": "hello there"}])
    assert reply.type == "message" and reply.role == "assistant"
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].text == "hello there"  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens == 2


def test_a_streamed_message_is_translated_event_by_event(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="mock", max_tokens=100,
                                messages=[{"role": "user", "content": "one two three four"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "one two three four" and len(pieces) > 1
    assert final.content[0].text == "one two three four"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4


def test_a_forced_tool_call_streams_its_input_as_json_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="mock", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "Paris"}]) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict) and uses[0].input  # the streamed JSON reassembled by the SDK
    assert final.stop_reason == "tool_use"


def test_errors_are_the_sdk_s_exception_types(gateway: str, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway, api_key="sk-wrong", max_retries=0).messages.create(
            model="mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="mock", max_tokens=10,
                               messages=[{"role": "robot", "content": "hi"}])  # type: ignore[typeddict-item]
    assert "messages.0.role" in str(bad.value)
    reply = httpx.post(gateway + "/v1/messages", content=b"{not json", headers={"x-api-key": DEV_KEY})
    assert reply.status_code == 400 and reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_an_anthropic_deployment_is_relayed_byte_for_byte(upstream: Starlette, gateway: str) -> None:
    body = orjson.dumps(message("native hello", input_tokens=12, output_tokens=3))
    upstream.state.script.append(RawReply(200, body, "application/json"))
    request = {"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}],
               "metadata": {"user_id": "u-7"}, "top_k": 5}
    headers = {"x-api-key": DEV_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"}
    reply = httpx.post(gateway + "/v1/messages", json=request, headers=headers)
    assert reply.status_code == 200 and reply.content == body
    sent = upstream.state.requests[-1]
    assert sent.body == {**request, "model": "claude-fake-1"}  # the caller's own body, top_k and all
    assert sent.headers["anthropic-beta"] == "tools-2024-04-04" and sent.headers["x-api-key"] == "ant-secret"
    assert DEV_KEY not in str(sent.headers)

    events = message_events(message("streamed natively", input_tokens=9, output_tokens=4))
    upstream.state.script.append(StreamReply(events))
    with httpx.stream("POST", gateway + "/v1/messages", json={**request, "stream": True}, headers=headers) as streamed:
        assert streamed.status_code == 200
        assert streamed.read() == b"".join(encoded(event) for event in events)

    entries = _log_entries(gateway, 2)
    by_stream = {entry["stream"]: entry for entry in entries}
    assert by_stream[False]["endpoint"] == "/v1/messages" and by_stream[False]["provider"]["name"] == "claude"
    assert by_stream[False]["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert by_stream[True]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def test_the_sdk_reads_a_native_stream_and_its_tool_input(upstream: Starlette, client: anthropic.Anthropic) -> None:
    upstream.state.script.append(tool_stream([("toolu_01", "get_weather", {"city": "Oslo"})], text_before="Let me"))
    with client.messages.stream(model="claude", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": "weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Let me"  # type: ignore[union-attr]
    assert final.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]


def test_an_upstream_error_mid_stream_reaches_the_sdk_as_an_error(upstream: Starlette, client: anthropic.Anthropic
                                                                  ) -> None:
    upstream.state.script.append(overloaded())
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code in (503, 529)
    cut = message_events(message("never finished"))[:-2]  # no message_delta, no message_stop
    upstream.state.script.append(StreamReply(cut))
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="claude", max_tokens=10,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            stream.get_final_message()


def test_count_tokens_native_and_estimated(upstream: Starlette, gateway: str, client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "count these words please"}]
    native = client.messages.count_tokens(model="claude", messages=messages)
    assert native.input_tokens == len(json.dumps(messages).split())  # the fake's own count: the upstream's answer
    assert upstream.state.requests[-1].path == "/v1/messages/count_tokens"
    estimated = httpx.post(gateway + "/v1/messages/count_tokens", json={"model": "mock", "messages": messages},
                           headers={"x-api-key": DEV_KEY})
    assert estimated.status_code == 200 and estimated.json()["input_tokens"] > 0
    assert estimated.headers["x-sluice-token-count"] == "estimate"


def test_models_in_anthropic_shape_when_asked(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["mock", "claude"]
