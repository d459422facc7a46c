"""OpenInference attributes decoded from raw exchanges, usage found in raw bytes, and the metric labels."""

from __future__ import annotations

import json

import orjson

from sluice.stream_reader import assemble_stream, sse_events
from sluice.telemetry import openinference as oi
from sluice.telemetry.request_metrics import route_of, upstream_error_kind
from sluice.telemetry.usage import Usage, usage_of
from tests.telemetry_support import CHAT_BODY, TOOL_STREAM_BODY, exchange


def test_a_stream_assembles_into_the_reply_it_streamed() -> None:
    item = exchange("chat", {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}})
    split = b"".join(item.chunks)
    reply = assemble_stream(sse_events([split[start:start + 5] for start in range(0, len(split), 5)]))[0]  # mid-event
    assert reply is not None and reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "Say hello to Phoenix"}
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["total_tokens"] == 10


def test_streamed_tool_calls_are_joined() -> None:
    reply = assemble_stream(sse_events(exchange("chat", TOOL_STREAM_BODY).chunks))[0]
    assert reply is not None
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"input": "weather in Paris"}


def test_a_broken_stream_keeps_its_error() -> None:
    reply = assemble_stream(sse_events([b'data: {"error": {"message": "boom"}}\n\n']))[0]
    assert reply is not None and reply["error"] == {"message": "boom"}


def test_messages_flatten_with_parts_tool_calls_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    attributes = oi.messages_attributes("llm.input_messages", messages)
    assert attributes["llm.input_messages.0.message.contents.0.message_content.text"] == "look"
    assert attributes["llm.input_messages.0.message.contents.1.message_content.type"] == "image"
    assert attributes["llm.input_messages.0.message.contents.1.message_content.image.image.url"] == \
        "data:image/png;base64,…"  # inline images are not exported
    assert attributes["llm.input_messages.1.message.tool_calls.0.tool_call.function.name"] == "f"
    assert attributes["llm.input_messages.2.message.tool_call_id"] == "c1"


def test_hidden_inputs_keep_parameters_and_tools_but_no_contents() -> None:
    raw = orjson.dumps(TOOL_STREAM_BODY)
    attributes = oi.request_attributes("chat", TOOL_STREAM_BODY, raw, hide=True)
    assert attributes["input.value"] == oi.REDACTED
    assert "llm.tools.0.tool.json_schema" in attributes and "llm.invocation_parameters" in attributes
    assert not any(name.startswith("llm.input_messages") for name in attributes)


def test_usage_is_found_in_replies_and_in_split_streams() -> None:
    assert usage_of(exchange("chat", CHAT_BODY)) == Usage(6, 4, 10)
    streamed = exchange("chat", TOOL_STREAM_BODY)
    wire = b"".join(streamed.chunks)
    streamed.chunks = [wire[start:start + 7] for start in range(0, len(wire), 7)]
    assert usage_of(streamed) == Usage(3, 3, 6)
    assert usage_of(exchange("chat", {**CHAT_BODY, "stream": True})) is None  # no include_usage
    assert usage_of(exchange("embeddings", {"model": "mock", "input": "a b c"})) == Usage(3, 0, 3)


def test_metric_labels() -> None:
    item = exchange("chat", CHAT_BODY)
    assert route_of(item) == "/v1/chat/completions"
    item.endpoint = "/provider/openai/v1/files/file-123"
    assert route_of(item) == "/provider/openai"
    assert upstream_error_kind(item) is None
    item.error, item.status, item.error_type, item.error_code = "slow", 504, "upstream_error", "upstream_timeout"
    assert upstream_error_kind(item) == "timeout"
    item.status, item.error_code = 429, None
    assert upstream_error_kind(item) == "http_4xx"
    item.error_type = "invalid_request_error"  # refused by the gateway itself
    assert upstream_error_kind(item) is None
    item.upstream_offset = None
    assert upstream_error_kind(item) is None
