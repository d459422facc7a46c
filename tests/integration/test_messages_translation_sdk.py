"""The official anthropic SDK reads what the Messages front door's translators produce, over a loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sluice.frontdoors.messages_reply import anthropic_error, chat_to_message
from sluice.frontdoors.messages_request import MessagesRequestError, messages_to_chat
from sluice.frontdoors.messages_stream import ChatToMessagesStream
from tests.servers import serve

WEATHER: ToolParam = {"name": "weather", "description": "The weather in a city.",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
HI: list[MessageParam] = [{"role": "user", "content": "Hi"}]
ARGUMENTS = '{"city": "Paris", "units": ["C"]}'


def completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {"id": "chatcmpl-sdk1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-sdk1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


USAGE_CHUNK = {**chunk({}), "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 7}}
REPLIES: dict[str, dict[str, Any]] = {
    "text-model": completion({"content": "Hello, world"}, "stop"),
    "tool-model": completion({"content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ARGUMENTS}}]},
        "tool_calls"),
}
STREAMS: dict[str, list[dict[str, Any]]] = {
    "text-model": [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}),
                   chunk({"content": ", wor"}), chunk({"content": "ld"}), chunk({}, "stop"), USAGE_CHUNK],
    "tool-model": [
        chunk({"role": "assistant", "reasoning_content": "Use the tool."}), chunk({"content": "Checking."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]}),
        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS[i:i + 5]}}]})
          for i in range(0, len(ARGUMENTS), 5)],
        chunk({}, "tool_calls"), USAGE_CHUNK,
    ],
    "broken-model": [chunk({"content": "Hel"})],
}


async def messages(request: Request) -> Response:
    body = orjson.loads(await request.body())
    try:
        chat = messages_to_chat(body)
    except MessagesRequestError as exc:
        return JSONResponse(anthropic_error(400, f"{exc.param}: {exc.message}"), status_code=400)
    request.app.state.seen.append(chat)
    model = chat["model"]
    if model == "limited-model":
        return JSONResponse(anthropic_error(429, "Slow down."), status_code=429)
    if not chat.get("stream"):
        return JSONResponse(chat_to_message(REPLIES[model], model=model))
    return StreamingResponse(events(model), media_type="text/event-stream")


async def events(model: str) -> AsyncIterator[bytes]:
    stream = ChatToMessagesStream(model=model, message_id="msg_sdk1")
    for item in STREAMS[model]:
        yield stream.feed(item)
    yield stream.fail(529, "Overloaded") if model == "broken-model" else stream.finish()


@pytest.fixture(scope="module")
def app() -> Starlette:
    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    app.state.seen = []
    return app


@pytest.fixture(scope="module")
def client(app: Starlette) -> Iterator[anthropic.Anthropic]:
    with serve(app) as url, anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=5) as sdk:
        yield sdk


def test_create_sees_the_translated_text_reply(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(model="text-model", max_tokens=50, messages=HI)
    assert [(block.type, getattr(block, "text", None)) for block in reply.content] == [("text", "Hello, world")]
    assert (reply.id, reply.model, reply.stop_reason) == ("msg_sdk1", "text-model", "end_turn")
    assert (reply.usage.input_tokens, reply.usage.cache_read_input_tokens, reply.usage.output_tokens) == (20, 1, 7)


def test_create_sees_a_tool_use_and_the_request_was_translated(client: anthropic.Anthropic, app: Starlette) -> None:
    conversation: list[MessageParam] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0", "name": "weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "18C"},
                                     {"type": "text", "text": "And tomorrow?"}]},
    ]
    reply = client.messages.create(model="tool-model", max_tokens=50, system="Be brief.", messages=conversation,
                                   tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert reply.stop_reason == "tool_use"
    [text, use] = reply.content
    assert text.type == "text" and text.text == "Checking."
    assert use.type == "tool_use" and (use.id, use.name, use.input) == ("call_1", "weather",
                                                                       {"city": "Paris", "units": ["C"]})
    chat = app.state.seen[-1]
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_0", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_0", "content": "18C"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}}]
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("auto", False)


def test_stream_text_and_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="text-model", max_tokens=50, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Hello", ", wor", "ld"]
    assert [(block.type, getattr(block, "text", None)) for block in final.content] == [("text", "Hello, world")]
    assert (final.id, final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "msg_sdk1", "end_turn", 21, 7)


def test_stream_reassembles_a_tool_calls_input_from_its_json_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="tool-model", max_tokens=50, messages=HI, tools=[WEATHER]) as stream:
        seen = list(stream)
        final = stream.get_final_message()
    partial = "".join(event.partial_json for event in seen if event.type == "input_json")
    assert partial == ARGUMENTS
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    thinking, text, use = final.content
    assert thinking.type == "thinking" and thinking.thinking == "Use the tool."
    assert text.type == "text" and text.text == "Checking."
    assert use.type == "tool_use" and use.input == {"city": "Paris", "units": ["C"]} and use.id == "call_1"
    assert final.stop_reason == "tool_use"


def test_an_error_event_mid_stream_raises_an_api_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model="broken-model", max_tokens=50, messages=HI) as stream:
            list(stream.text_stream)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_error_bodies_raise_the_sdks_status_errors(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="limited-model", max_tokens=50, messages=HI)
    assert limited.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down."}}
    bad: Any = [{"role": "user", "content": [{"type": "video", "url": "x"}]}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="text-model", max_tokens=50, messages=bad)
    assert "messages.0.content.0.type" in refused.value.message
