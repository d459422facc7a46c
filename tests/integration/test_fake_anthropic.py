"""The official anthropic SDK against the fake Messages API: proof that the fake speaks the real wire format."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam
from starlette.applications import Starlette

from tests.fakes.anthropic import (
    ECHO_PREFIX,
    RawReply,
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

MODEL = "claude-fake-1"
HI: list[MessageParam] = [{"role": "user", "content": "Hi there"}]


@pytest.fixture
def fake() -> Starlette:
    return create_fake_anthropic(api_key="k")


@pytest.fixture
def url(fake: Starlette) -> Iterator[str]:
    with serve(fake) as base_url:
        yield base_url


@pytest.fixture
def client(url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=10) as sdk:
        yield sdk


def test_default_reply_echoes_the_last_user_text(client: anthropic.Anthropic, fake: Starlette) -> None:
    reply = client.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert reply.content[0].type == "text" and reply.content[0].text == ECHO_PREFIX + "Hi there"
    assert (reply.model, reply.stop_reason, reply.role) == (MODEL, "end_turn", "assistant")
    assert reply.usage.output_tokens == 3
    [seen] = fake.state.requests
    assert seen.path == "/v1/messages"
    assert seen.body == {"model": MODEL, "max_tokens": 100, "messages": HI}
    assert seen.headers["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert seen.headers["authorization"] == "Bearer k"


def test_scripted_message_parses(client: anthropic.Anthropic, fake: Starlette) -> None:
    fake.state.script.append(message("Scripted.", id="msg_1", input_tokens=7, output_tokens=2,
                                     cache_read_input_tokens=50))
    reply = client.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert (reply.id, reply.content[0].text) == ("msg_1", "Scripted.")  # type: ignore[union-attr]
    assert (reply.usage.input_tokens, reply.usage.cache_read_input_tokens) == (7, 50)


def test_default_stream_yields_text_and_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 3
    assert "".join(pieces) == ECHO_PREFIX + "Hi there"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0


def test_scripted_tool_stream_accumulates_tool_input(client: anthropic.Anthropic, fake: Starlette) -> None:
    inputs: list[tuple[str, str, dict[str, Any]]] = [
        ("toolu_1", "get_weather", {"city": "Paris", "days": [1, 2]}), ("toolu_2", "now", {}),
    ]
    fake.state.script.append(tool_stream(inputs, text_before="Checking.", chunks=4))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "text" and final.content[0].text == "Checking."
    tools = [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert tools == inputs


def test_scripted_dict_reply_is_streamed_when_asked(client: anthropic.Anthropic, fake: Starlette) -> None:
    fake.state.script.append(message("Streamed from a dict."))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        assert "".join(stream.text_stream) == "Streamed from a dict."


def test_stream_delay_spaces_out_events(client: anthropic.Anthropic, fake: Starlette) -> None:
    events = text_stream("slow", chunks=2)
    fake.state.script.append(StreamReply(events, delay=0.05))
    started = time.monotonic()
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        assert "".join(stream.text_stream) == "slow"
    assert time.monotonic() - started >= 0.05 * (len(events) - 1)


def test_rate_limit_raises_rate_limit_error(client: anthropic.Anthropic, fake: Starlette) -> None:
    fake.state.script.append(rate_limited(retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_overloaded_raises_internal_server_error(client: anthropic.Anthropic, fake: Starlette) -> None:
    fake.state.script.append(overloaded())
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert caught.value.status_code == 529


def test_mid_stream_error_event_raises(client: anthropic.Anthropic, fake: Starlette) -> None:
    fake.state.script.append(text_stream("never finished", chunks=3)[:4] + [error_event()])
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
            list(stream.text_stream)


def test_wrong_key_is_401_in_anthropic_format(url: str) -> None:
    with anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert caught.value.body == {"type": "error", "request_id": "req_fake",
                                 "error": {"type": "authentication_error", "message": "invalid x-api-key"}}


def test_x_api_key_and_version_checks(url: str) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": HI}
    ok = httpx.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert ok.status_code == 200 and ok.headers["request-id"]
    missing = httpx.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "k"})
    assert (missing.status_code, missing.json()["error"]["type"]) == (400, "invalid_request_error")
    anonymous = httpx.post(f"{url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert (anonymous.status_code, anonymous.json()["error"]["type"]) == (401, "authentication_error")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": MODEL, "messages": HI}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI, "temperature": 0.5}, "temperature"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI, "n": 2}, "n: Extra inputs"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
         "non-empty"),
        ({"model": MODEL, "max_tokens": 5, "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": "and?"},
        ]}, "without `tool_result`"),
    ],
)
def test_strict_body_validation(client: anthropic.Anthropic, body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=fragment):
        client.post("/v1/messages", cast_to=object, body=body)


def test_sampling_params_are_fine_with_the_old_version(url: str) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": HI, "temperature": 0.3}
    reply = httpx.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert reply.status_code == 200


def test_raw_reply_and_recorded_headers(url: str, fake: Starlette) -> None:
    fake.state.script.append(RawReply(502, b"<html>Bad Gateway</html>", "text/html"))
    body = {"model": MODEL, "max_tokens": 10, "messages": HI}
    reply = httpx.post(f"{url}/v1/messages", json=body,
                       headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": "b1"})
    assert (reply.status_code, reply.text) == (502, "<html>Bad Gateway</html>")
    assert fake.state.requests[-1].headers["anthropic-beta"] == "b1"
