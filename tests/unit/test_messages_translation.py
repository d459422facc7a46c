"""The Messages front door's pure translation: Anthropic requests to OpenAI chat, chat replies and streams back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from sluice.frontdoors.messages_reply import ChatReplyError, anthropic_error, anthropic_error_event, chat_to_message
from sluice.frontdoors.messages_request import MessagesRequestError, messages_to_chat
from sluice.frontdoors.messages_stream import ChatToMessagesStream

EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
MODEL = "claude-sonnet-4-5"


def request(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}]}
    body.update(fields)
    return body


def translated_messages(messages: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    chat_messages: list[dict[str, Any]] = messages_to_chat(request(messages=messages, **fields))["messages"]
    return chat_messages


# --- requests -------------------------------------------------------------------------------------------------


def test_a_minimal_request_keeps_model_and_max_tokens() -> None:
    assert messages_to_chat(request()) == {
        "model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}],
    }


def test_system_as_a_string_or_text_blocks_is_one_leading_system_message() -> None:
    assert translated_messages([{"role": "user", "content": "Hi"}], system="Be brief.")[0] == {
        "role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "One."},
              {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}}]
    assert translated_messages([{"role": "user", "content": "Hi"}], system=blocks)[0] == {
        "role": "system", "content": "One.\n\nTwo."}


def test_a_mid_conversation_system_message_stays_where_it_is() -> None:
    # Anthropic's mid-conversation system messages: Claude Code 2.1 sends one right after the first user turn.
    messages = translated_messages([
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": [{"type": "text", "text": "Agents:"}, {"type": "text", "text": "- claude"}]},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Bye"},
    ], system="Top.")
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Top."), ("user", "Hi"), ("system", "Agents:\n\n- claude"), ("assistant", "Hello"),
        ("system", "Be brief."), ("user", "Bye")]


def test_user_text_and_images_become_content_parts() -> None:
    blocks = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert translated_messages([{"role": "user", "content": blocks}]) == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]


def test_assistant_tool_use_becomes_tool_calls_and_thinking_is_dropped() -> None:
    assistant = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "xxx"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "days": [1, 2]}},
    ]}
    messages = translated_messages([{"role": "user", "content": "Weather?"}, assistant])
    assert messages[1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Checking."}],
        "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris","days":[1,2]}'}}],
    }


def test_tool_results_become_tool_messages_before_the_rest_of_the_turn() -> None:
    user = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2",
         "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]},
        {"type": "tool_result", "tool_use_id": "toolu_3", "content": "no such city", "is_error": True},
        {"type": "tool_result", "tool_use_id": "toolu_4"},
        {"type": "text", "text": "Thanks"},
    ]}
    assert translated_messages([user]) == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "line 1\n\nline 2"},
        {"role": "tool", "tool_call_id": "toolu_3", "content": "Error: no such city"},
        {"role": "tool", "tool_call_id": "toolu_4", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]


def test_images_in_a_tool_result_follow_the_tool_messages_in_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
    user = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "shot"}, image]},
    ]}
    assert translated_messages([user]) == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "shot"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
    ]


def test_sampling_stop_user_and_stream_fields() -> None:
    chat = messages_to_chat(request(stop_sequences=["END", "STOP"], temperature=0.2, top_p=0.9, top_k=5,
                                    metadata={"user_id": "u-42"}, stream=True))
    assert chat["stop"] == ["END", "STOP"]
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.2, 0.9, "u-42")
    assert "top_k" not in chat
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert "stream" not in messages_to_chat(request(stream=False))


def test_tools_become_functions() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    chat = messages_to_chat(request(tools=[
        {"name": "weather", "description": "Weather now", "input_schema": schema, "cache_control": {"type": "x"}},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}},
    ]))
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": schema}},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "weather"}, {"tool_choice": {"type": "function", "function": {"name": "weather"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
    ({"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
     {"tool_choice": {"type": "function", "function": {"name": "weather"}}, "parallel_tool_calls": False}),
    ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required"}),
])
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = messages_to_chat(request(tool_choice=choice))
    assert {key: chat[key] for key in ("tool_choice", "parallel_tool_calls") if key in chat} == expected


@pytest.mark.parametrize(("fields", "effort"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
    ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "medium"),
    ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, "high"),
    ({"thinking": {"type": "disabled"}}, None),
    ({"thinking": {"type": "adaptive"}}, None),
    ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}, "xhigh"),
])
def test_thinking_becomes_reasoning_effort(fields: dict[str, Any], effort: str | None) -> None:
    assert messages_to_chat(request(**fields)).get("reasoning_effort") == effort


@pytest.mark.parametrize(("body", "param"), [
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": MODEL, "max_tokens": True, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 5}, "messages"),
    ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages"),
    (request(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]), "messages.1.role"),
    (request(messages=[{"role": "user", "content": "x"}, {"role": "system", "content": [{"type": "image"}]}]),
     "messages.1.content.0.type"),
    (request(messages=["hi"]), "messages.0"),
    (request(messages=[{"role": "user", "content": 3}]), "messages.0.content"),
    (request(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "video"}]}]),
     "messages.2.content.1.type"),
    (request(messages=[{"role": "user", "content": [{"text": "no type"}]}]), "messages.0.content.0.type"),
    (request(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]), "messages.0.content.0.text"),
    (request(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
     "messages.0.content.0.source.type"),
    (request(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "A"}}]}]),
     "messages.0.content.0.source.media_type"),
    (request(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
     "messages.0.content.0.tool_use_id"),
    (request(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}]}]),
     "messages.0.content.0.content.0.type"),
    (request(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]),
     "messages.0.content.0.input"),
    (request(messages=[{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]),
     "messages.0.content.0.id"),
    (request(messages=[{"role": "assistant", "content": [{"type": "image", "source": {}}]}]),
     "messages.0.content.0.type"),
    (request(system=[{"type": "image"}]), "system.0.type"),
    (request(system=5), "system"),
    (request(stop_sequences="END"), "stop_sequences"),
    (request(temperature="hot"), "temperature"),
    (request(metadata={"user_id": 5}), "metadata.user_id"),
    (request(tools={"name": "f"}), "tools"),
    (request(tools=[{"name": "f"}]), "tools.0.input_schema"),
    (request(tools=[{"input_schema": {}}]), "tools.0.name"),
    (request(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type"),
    (request(tool_choice={"type": "function"}), "tool_choice.type"),
    (request(tool_choice={"type": "tool"}), "tool_choice.name"),
    (request(thinking={"type": "enabled"}), "thinking.budget_tokens"),
    (request(output_config={"effort": "extreme"}), "output_config.effort"),
])
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(MessagesRequestError) as caught:
        messages_to_chat(body)
    assert caught.value.param == param
    assert isinstance(caught.value, ValueError) and str(caught.value)


# --- replies --------------------------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish_reason: str | None = "stop", **usage: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 30}, **usage},
    }


def test_a_text_reply_is_a_valid_message_with_anthropic_usage() -> None:
    message = Message.model_validate(chat_to_message(completion({"content": "Hello!"}), model=MODEL))
    assert message.id == "msg_abc123" and message.model == MODEL and message.role == "assistant"
    assert [(block.type, getattr(block, "text", None)) for block in message.content] == [("text", "Hello!")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        70, 30, 20)


def test_reasoning_comes_first_as_a_thinking_block() -> None:
    for field in ("reasoning_content", "reasoning"):
        reply = completion({"content": "42", field: "Think."},
                           completion_tokens_details={"reasoning_tokens": 12})
        message = Message.model_validate(chat_to_message(reply, model=MODEL))
        assert [block.type for block in message.content] == ["thinking", "text"]
        assert message.content[0].type == "thinking" and message.content[0].thinking == "Think."
        assert message.usage.output_tokens_details is not None
        assert message.usage.output_tokens_details.thinking_tokens == 12


def test_tool_calls_become_tool_use_blocks() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "bad", "arguments": '{"city": "Par'}},
        {"id": "call_4", "type": "function", "function": {"name": "list", "arguments": "[1, 2]"}},
    ]
    reply = completion({"content": None, "tool_calls": calls}, finish_reason="tool_calls")
    message = Message.model_validate(chat_to_message(reply, model=MODEL))
    assert message.stop_reason == "tool_use"
    uses = [(block.id, block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert uses == [("call_1", "weather", {"city": "Paris"}), ("call_2", "now", {}),
                    ("call_3", "bad", {"_raw": '{"city": "Par'}), ("call_4", "list", {"_raw": "[1, 2]"})]


@pytest.mark.parametrize(("finish_reason", "tools", "expected"), [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
    ("content_filter", False, "refusal"), ("stop", True, "tool_use"), (None, False, "end_turn"),
    ("something_new", False, "end_turn"), ("length", True, "max_tokens"),
])
def test_stop_reasons(finish_reason: str | None, tools: bool, expected: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}] if tools else None
    reply = completion({"content": "x", "tool_calls": calls}, finish_reason=finish_reason)
    assert Message.model_validate(chat_to_message(reply, model=MODEL)).stop_reason == expected


def test_an_empty_reply_without_usage_is_still_a_message() -> None:
    reply = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                              "finish_reason": "stop"}]}
    message = Message.model_validate(chat_to_message(reply, model=MODEL))
    assert message.content == [] and message.usage.input_tokens == 0 and message.usage.output_tokens == 0


@pytest.mark.parametrize("reply", [{}, {"choices": []}, {"choices": [{"index": 0}]}, {"error": {"message": "x"}}])
def test_a_reply_that_is_not_a_chat_completion_is_refused(reply: dict[str, Any]) -> None:
    with pytest.raises(ChatReplyError):
        chat_to_message(reply, model=MODEL)


@pytest.mark.parametrize(("status", "error_type"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"),
    (403, "permission_error"), (404, "not_found_error"), (408, "invalid_request_error"),
    (413, "request_too_large"), (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"),
    (502, "api_error"), (503, "overloaded_error"), (504, "timeout_error"), (529, "overloaded_error"),
])
def test_error_bodies(status: int, error_type: str) -> None:
    body = anthropic_error(status, "Nope.")
    assert body == {"type": "error", "error": {"type": error_type, "message": "Nope."}}
    if error_type != "request_too_large":  # documented by Anthropic, but not (yet) in the SDK's error union
        ErrorResponse.model_validate(body)


def test_error_event_is_a_named_sse_event() -> None:
    assert parse_sse(anthropic_error_event(529, "Overloaded")) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    assert anthropic_error(400, "x", "my_type")["error"]["type"] == "my_type"


# --- streams --------------------------------------------------------------------------------------------------


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, decoded data) for each SSE event in `raw`, which must be strictly framed."""
    assert raw.endswith(b"\n\n") or not raw
    events = []
    for frame in raw.decode().split("\n\n")[:-1]:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((event_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return events


def validated(raw: bytes) -> list[Any]:
    """The stream's events, each validated by the SDK's types, after checking Anthropic's event order."""
    events = parse_sse(raw)
    for name, data in events:
        assert name == data["type"]
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    parsed = [EVENTS.validate_python(data) for name, data in events if name != "ping"]
    check_block_order(parsed[1:-2])
    return parsed


def check_block_order(events: list[Any]) -> None:
    """Blocks open one at a time with indexes 0, 1, 2…; deltas go to a started block whose type they fit."""
    kinds: dict[int, str] = {}
    open_index: int | None = None
    for event in events:
        if event.type == "content_block_start":
            assert open_index is None and event.index == len(kinds)
            kinds[event.index] = event.content_block.type
            open_index = event.index
        elif event.type == "content_block_delta":
            fits = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "tool_use"}
            assert kinds[event.index] == fits[event.delta.type]
        else:
            assert event.type == "content_block_stop" and event.index == open_index
            open_index = None
    assert open_index is None


def reassembled(events: list[Any]) -> dict[str, Any]:
    """The final message a client builds from the events, as Anthropic's message dict."""
    message: dict[str, Any] = events[0].message.model_dump(exclude_none=True)
    json_parts: dict[int, str] = {}
    for event in events[1:]:
        if event.type == "content_block_start":
            message["content"].append(event.content_block.model_dump(exclude_none=True))
        elif event.type == "content_block_delta":
            block, delta = message["content"][event.index], event.delta
            if delta.type == "text_delta":
                block["text"] += delta.text
            elif delta.type == "thinking_delta":
                block["thinking"] += delta.thinking
            else:
                json_parts[event.index] = json_parts.get(event.index, "") + delta.partial_json
        elif event.type == "message_delta":
            message["stop_reason"] = event.delta.stop_reason
            message["usage"].update(event.usage.model_dump(exclude_none=True))
    for index, text in json_parts.items():
        message["content"][index]["input"] = json.loads(text)
    return message


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]}


def usage_chunk(prompt: int = 50, completion: int = 9, cached: int = 10) -> dict[str, Any]:
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}}


def tool_delta(index: int, arguments: str, *, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update({"id": call_id, "type": "function"})
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def run(chunks: list[dict[str, Any]]) -> bytes:
    stream = ChatToMessagesStream(model=MODEL, message_id="msg_s1")
    return b"".join(stream.feed(item) for item in chunks) + stream.finish()


def test_a_text_stream() -> None:
    events = validated(run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                            chunk({"content": "lo"}), chunk(finish_reason="stop"), usage_chunk()]))
    assert [event.type for event in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert events[0].message.id == "msg_s1" and events[0].message.model == MODEL
    assert reassembled(events)["content"] == [{"type": "text", "text": "Hello"}]
    final = events[-2]
    assert final.delta.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (40, 10, 9)


def test_reasoning_text_and_several_tool_calls() -> None:
    events = validated(run([
        chunk({"role": "assistant", "reasoning_content": "Need "}), chunk({"reasoning_content": "weather."}),
        chunk({"content": "Let me check."}),
        chunk(tool_delta(0, "", call_id="call_a", name="weather")), chunk(tool_delta(0, '{"city":')),
        chunk(tool_delta(0, '"Paris"}')),
        chunk(tool_delta(1, '{"tz":"CET"}', call_id="call_b", name="clock")),
        chunk(tool_delta(2, "", call_id="call_c", name="noop")),
        chunk(finish_reason="tool_calls"), usage_chunk(),
    ]))
    message = reassembled(events)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Need weather.", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "clock", "input": {"tz": "CET"}},
        {"type": "tool_use", "id": "call_c", "name": "noop", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_reasoning_under_either_name_and_text_after_it_alternate_blocks() -> None:
    events = validated(run([chunk({"reasoning": "a"}), chunk({"content": "b"}), chunk({"reasoning_content": "c"}),
                            chunk({"refusal": "d"}, "content_filter")]))
    message = reassembled(events)
    assert [(block["type"], block.get("text", block.get("thinking"))) for block in message["content"]] == [
        ("thinking", "a"), ("text", "b"), ("thinking", "c"), ("text", "d")]
    assert message["stop_reason"] == "refusal"


def test_text_interleaved_with_tool_calls_opens_new_blocks() -> None:
    events = validated(run([
        chunk({"content": "First."}), chunk(tool_delta(0, '{"a":1}', call_id="call_a", name="f")),
        chunk({"content": "Then."}), chunk(tool_delta(1, "{}", call_id="call_b", name="g")),
        chunk(finish_reason="stop"),
    ]))
    assert [block["type"] for block in reassembled(events)["content"]] == ["text", "tool_use", "text", "tool_use"]
    assert events[-2].delta.stop_reason == "tool_use"  # "stop" with tool calls: agents loop on tool_use


def test_a_late_argument_piece_still_reaches_its_tool_block() -> None:
    events = validated(run([
        chunk(tool_delta(0, '{"a":', call_id="call_a", name="f")), chunk(tool_delta(1, "{}", call_id="call_b",
                                                                                     name="g")),
        chunk(tool_delta(0, "1}")), chunk(finish_reason="tool_calls"),
    ]))
    assert [block["input"] for block in reassembled(events)["content"]] == [{"a": 1}, {}]


def test_a_finish_without_any_chunk_or_content_is_a_valid_empty_message() -> None:
    for chunks in ([], [chunk({"role": "assistant", "content": ""}), chunk(finish_reason="length")]):
        events = validated(run(chunks))
        assert [event.type for event in events] == ["message_start", "message_delta", "message_stop"]
        assert reassembled(events)["content"] == []
    assert validated(run([chunk(finish_reason="length")]))[-2].delta.stop_reason == "max_tokens"


def test_usage_on_the_first_chunk_is_in_message_start() -> None:
    first = {**chunk({"role": "assistant", "content": "Hi"}), "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
    events = validated(run([first, chunk(finish_reason="stop")]))
    assert events[0].message.usage.input_tokens == 12
    assert events[-2].usage.output_tokens == 1


def test_fail_emits_only_an_error_event_and_ends_the_stream() -> None:
    stream = ChatToMessagesStream(model=MODEL, message_id="msg_s1")
    started = stream.feed(chunk({"content": "Hel"}))
    failed = stream.fail(529, "Overloaded")
    assert parse_sse(failed) == [("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})]
    assert [name for name, _ in parse_sse(started)][-1] == "content_block_delta"
    assert stream.done and stream.feed(chunk({"content": "lo"})) == b"" and stream.finish() == b""
