"""The pure OpenAI Responses ⇄ chat translation: requests, replies, streams, checked against the openai SDK's types."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from sluice.frontdoors.responses_reply import chat_to_response, conversation_turn, responses_error
from sluice.frontdoors.responses_request import ResponsesRequestError, namespaces_of, responses_to_chat
from sluice.frontdoors.responses_stream import ChatToResponsesStream

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
CREATED = 1_760_000_000
RESPONSE_ID = "resp_0123456789abcdef"
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}}


def chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return responses_to_chat({"model": "gpt-test", **body}, history)


# --- requests -------------------------------------------------------------------------------------------------


def test_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    assert chat({"input": "Hi", "instructions": "Be brief."}) == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }


def test_item_list_maps_every_message_kind_and_merges_function_calls() -> None:
    body = {"input": [
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather here? "},
            {"type": "input_image", "image_url": "https://example.test/sky.png", "detail": "low"},
        ]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "get_weather",
         "arguments": '{"city":"Lyon"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "21C"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    ]}
    assert chat(body)["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here? "},
            {"type": "image_url", "image_url": {"url": "https://example.test/sky.png", "detail": "low"}},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C"},
    ]


def test_function_calls_without_a_preceding_assistant_message_start_one() -> None:
    messages = chat({"input": [
        {"role": "user", "content": "Go"},
        {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": "{}"},
    ]})["messages"]
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_history_follows_the_new_instructions_and_precedes_the_new_input() -> None:
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    kept = copy.deepcopy(history)
    messages = chat({"input": "What is my name?", "instructions": "Be kind."}, history)["messages"]
    assert messages == [{"role": "system", "content": "Be kind."}, *kept,
                        {"role": "user", "content": "What is my name?"}]
    assert history == kept


def test_options_map_to_their_chat_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    out = chat({
        "input": "Hi", "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False, "max_output_tokens": 256, "temperature": 0.2, "top_p": 0.9, "user": "u-1",
        "reasoning": {"effort": "low", "summary": "auto"}, "stream": True, "metadata": {"k": "v"}, "store": True,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    })
    assert out == {
        "model": "gpt-test", "temperature": 0.2, "top_p": 0.9, "user": "u-1", "parallel_tool_calls": False,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER_TOOL["parameters"],
            "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
        "max_completion_tokens": 256, "reasoning_effort": "low",
        "stream": True, "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(("form", "expected"), [
    ({"type": "text"}, None),
    ({"type": "json_object"}, {"type": "json_object"}),
])
def test_plain_and_json_object_formats(form: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert chat({"input": "Hi", "text": {"format": form}}).get("response_format") == expected


def test_tool_choice_and_parallel_calls_need_tools_in_chat() -> None:
    out = chat({"input": "Hi", "tool_choice": "auto", "parallel_tool_calls": True, "tools": []})
    assert out == {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_words_pass_through(choice: str) -> None:
    assert chat({"input": "Hi", "tools": [WEATHER_TOOL], "tool_choice": choice})["tool_choice"] == choice


USER_TEXT = {"role": "user", "content": "Hi"}


def test_hosted_tools_are_left_out_and_namespaces_flattened() -> None:
    # What Codex 0.171 sends to every model: functions, a namespace of functions and a cached-only web search.
    agents = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}]}
    out = chat({"input": [USER_TEXT, {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1",
                                      "name": "close_agent", "arguments": "{}"},
                          {"type": "function_call_output", "call_id": "c1", "output": "closed"}],
                "tools": [WEATHER_TOOL, agents, {"type": "web_search", "external_web_access": False},
                          {"type": "file_search", "vector_store_ids": ["vs_1"]}]})
    assert [tool["function"]["name"] for tool in out["tools"]] == ["get_weather", "multi_agent_v1__close_agent"]
    assert out["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__close_agent"
    assert namespaces_of([agents]) == {"multi_agent_v1__close_agent": ("multi_agent_v1", "close_agent")}
    assert "tools" not in chat({"input": "Hi", "tools": [{"type": "web_search"}]})


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                              {"type": "input_image", "file_id": "file-1"}]}]},
     "input.0.content.1.file_id"),
    ({"input": [USER_TEXT, USER_TEXT, USER_TEXT, {"role": "user", "content": [{"type": "input_audio"}]}]},
     "input.3.content.0.type"),
    ({"input": "Hi", "tools": [WEATHER_TOOL, {"type": "custom", "name": "apply_patch"}]}, "tools.1.type"),
    ({"input": "Hi", "tools": [{"type": "crystal_ball"}]}, "tools.0.type"),
    ({"input": "Hi", "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "custom", "name": "x"}]}]},
     "tools.0.tools.0.type"),
    ({"input": "Hi", "tools": [{"type": "namespace", "tools": []}]}, "tools.0"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id"),
    ({"input": [USER_TEXT, {"type": "function_call_output", "call_id": "c",
                            "output": [{"type": "input_image", "image_url": "https://x.test/a.png"}]}]},
     "input.1.output.0.type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]},
     "input.0.content.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
     "input.0.content.0.file_id"),
    ({"input": []}, "input"),
    ({"input": "Hi", "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"input": "Hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
    ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
    ({"input": 5}, "input"),
])
def test_untranslatable_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ResponsesRequestError) as caught:
        chat(body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.param == param
    assert str(caught.value)


def test_a_missing_model_is_refused() -> None:
    with pytest.raises(ResponsesRequestError) as caught:
        responses_to_chat({"input": "Hi"})
    assert caught.value.param == "model"


# --- replies --------------------------------------------------------------------------------------------------


def reply(message: dict[str, Any], finish_reason: str = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "upstream-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
            "usage": usage or USAGE}


def response_for(message: dict[str, Any], request: dict[str, Any] | None = None, **kwargs: Any) -> Response:
    body = chat_to_response(reply(message, **kwargs), request=request or {"model": "gpt-test", "input": "Hi"},
                            response_id=RESPONSE_ID, created_at=CREATED)
    return Response.model_validate(orjson.loads(orjson.dumps(body)))


def test_text_reply_is_a_completed_response_with_usage() -> None:
    request = {"model": "gpt-test", "input": "Hi", "instructions": "Be brief.", "tools": [WEATHER_TOOL],
               "tool_choice": "auto", "temperature": 0.3, "top_p": 0.8, "metadata": {"k": "v"},
               "previous_response_id": "resp_prev", "store": False, "parallel_tool_calls": False,
               "text": {"format": {"type": "json_object"}}}
    response = response_for({"content": "Hello there."}, request)
    assert (response.id, response.object, response.status, response.created_at) == (
        RESPONSE_ID, "response", "completed", CREATED)
    assert response.output_text == "Hello there."
    [item] = response.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert item.id.startswith("msg_")
    assert [(part.type, getattr(part, "annotations", None)) for part in item.content] == [("output_text", [])]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (12, 7, 19)
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert (response.model, response.instructions, response.temperature, response.top_p) == (
        "gpt-test", "Be brief.", 0.3, 0.8)
    assert (response.metadata, response.previous_response_id) == ({"k": "v"}, "resp_prev")
    assert (response.model_extra or {})["store"] is False  # sent by the real API, not modelled by the SDK
    assert response.parallel_tool_calls is False and response.tool_choice == "auto"
    assert [tool.type for tool in response.tools] == ["function"] and response.tools[0].name == "get_weather"
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_object"
    assert response.incomplete_details is None and response.error is None


def test_defaults_echo_like_the_real_api() -> None:
    response = response_for({"content": "x"})
    assert (response.tool_choice, response.tools, response.parallel_tool_calls) == ("auto", [], True)
    assert (response.model_extra or {})["store"] is True
    assert response.metadata == {} and response.instructions is None


def test_tool_call_reply_is_function_call_items() -> None:
    calls = [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
             {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    response = response_for({"content": None, "tool_calls": calls}, finish_reason="tool_calls")
    assert response.status == "completed" and response.output_text == ""
    assert [(item.type, item.call_id, item.name, item.arguments, item.status) for item in response.output
            if item.type == "function_call"] == [
        ("function_call", "call_a", "get_weather", '{"city":"Paris"}', "completed"),
        ("function_call", "call_b", "get_time", "{}", "completed"),
    ]
    assert all(item.id and item.id.startswith("fc_") for item in response.output)
    assert len({item.id for item in response.output}) == 2


@pytest.mark.parametrize(("finish_reason", "reason"), [("length", "max_output_tokens"),
                                                       ("content_filter", "content_filter")])
def test_cut_replies_are_incomplete(finish_reason: str, reason: str) -> None:
    response = response_for({"content": "Partial"}, finish_reason=finish_reason)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == reason
    assert response.output_text == "Partial" and response.output[0].status == "incomplete"


def test_reasoning_content_is_a_reasoning_item_before_the_message() -> None:
    response = response_for({"content": "42", "reasoning_content": "6 times 7."})
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content is not None and [part.text for part in reasoning.content] == ["6 times 7."]
    assert message.type == "message" and response.output_text == "42"


def test_refusal_is_a_refusal_part() -> None:
    response = response_for({"content": None, "refusal": "I can't help with that."})
    [message] = response.output
    assert message.type == "message"
    assert [(part.type, getattr(part, "refusal", None)) for part in message.content] == [
        ("refusal", "I can't help with that.")]


def test_conversation_turn_keeps_history_and_input_and_the_clean_reply() -> None:
    chat_request = chat({"input": "Again?", "instructions": "Be brief."},
                        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])
    calls = [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}, "index": 0}]
    turn = conversation_turn(chat_request, {"role": "assistant", "content": None, "tool_calls": calls,
                                            "reasoning_content": "hm", "refusal": None})
    assert turn == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    ]
    # the stored turn is valid history for the next request
    assert chat({"input": "Next"}, turn)["messages"][:4] == turn


def test_responses_error_is_openais_error_shape() -> None:
    assert responses_error(400, "Bad tool.", param="tools.0.type") == {"error": {
        "message": "Bad tool.", "type": "invalid_request_error", "param": "tools.0.type", "code": None}}
    assert responses_error(502, "Upstream down.", code="upstream_unreachable")["error"]["type"] == "server_error"


# --- streams --------------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": CREATED, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], "usage": None}


def usage_chunk() -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": CREATED, "model": "m",
            "choices": [], "usage": USAGE}


def decode(data: bytes) -> list[dict[str, Any]]:
    """Each SSE event's JSON, checked to be framed as `event: <type>` + `data: <json>` with matching types."""
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        payload = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {payload['type']}"
        events.append(payload)
    return events


def run_stream(chunks: list[dict[str, Any]], request: dict[str, Any] | None = None,
               end: str = "finish") -> tuple[list[Any], ChatToResponsesStream]:
    """The typed events (validated with the SDK's ResponseStreamEvent) for `chunks`, sequence numbers checked."""
    stream = ChatToResponsesStream(request=request or {"model": "gpt-test", "input": "Hi", "stream": True},
                                   response_id=RESPONSE_ID, created_at=CREATED)
    data = stream.start() + b"".join(stream.feed(c) for c in chunks)
    data += stream.finish() if end == "finish" else stream.fail("Upstream went away.", "upstream_unreachable")
    events = [EVENTS.validate_python(payload) for payload in decode(data)]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    return events, stream


def test_text_stream_with_reasoning_events_in_order() -> None:
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Think"}),
              chunk({"reasoning_content": "ing."}), chunk({"content": "Hel"}), chunk({"content": "lo!"}),
              chunk({}, "stop"), usage_chunk()]
    events, stream = run_stream(chunks)
    assert [event.type for event in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    created = events[0].response
    assert created.status == "in_progress" and created.output == [] and created.id == RESPONSE_ID
    reasoning_id, message_id = events[2].item.id, events[9].item.id
    assert reasoning_id != message_id
    for event in events[2:9]:
        assert (event.output_index, getattr(event, "item_id", reasoning_id)) == (0, reasoning_id)
    for event in events[9:16]:
        assert (event.output_index, getattr(event, "item_id", message_id)) == (1, message_id)
        assert getattr(event, "content_index", 0) == 0
    streamed = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert streamed == "Hello!" and events[13].text == "Hello!"
    final = events[-1].response
    assert final.status == "completed" and final.output_text == streamed
    assert [item.id for item in final.output] == [reasoning_id, message_id]
    assert final.output[0].content is not None and final.output[0].content[0].text == "Thinking."
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (12, 7)
    assert stream.final_message() == {"role": "assistant", "content": "Hello!", "reasoning_content": "Thinking."}


def tool_chunks() -> list[dict[str, Any]]:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})
    return [
        chunk({"role": "assistant", "content": "Let me check."}),
        call(0, id="call_a", type="function", function={"name": "get_weather", "arguments": ""}),
        call(0, function={"arguments": '{"city":'}), call(0, function={"arguments": '"Paris"}'}),
        call(1, id="call_b", type="function", function={"name": "get_time", "arguments": "{}"}),
        chunk({}, "tool_calls"), usage_chunk(),
    ]


def test_tool_call_stream_closes_each_item_before_the_next() -> None:
    events, stream = run_stream(tool_chunks())
    types = [event.type for event in events]
    assert types == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    added = [event for event in events if event.type == "response.output_item.added"]
    assert [(event.output_index, event.item.type) for event in added] == [
        (0, "message"), (1, "function_call"), (2, "function_call")]
    first_call = added[1].item
    assert (first_call.call_id, first_call.name, first_call.arguments, first_call.status) == (
        "call_a", "get_weather", "", "in_progress")
    done = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert [(event.output_index, event.item_id, event.arguments) for event in done] == [
        (1, added[1].item.id, '{"city":"Paris"}'), (2, added[2].item.id, "{}")]
    final = events[-1].response
    assert final.output_text == "Let me check."
    assert [(item.call_id, item.arguments, item.status) for item in final.output if item.type == "function_call"] == [
        ("call_a", '{"city":"Paris"}', "completed"), ("call_b", "{}", "completed")]
    assert stream.final_message()["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]


def test_length_cut_stream_ends_incomplete() -> None:
    events, _ = run_stream([chunk({"content": "Once upon"}), chunk({}, "length"), usage_chunk()])
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete" and final.response.incomplete_details is not None
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.output_text == "Once upon" and final.response.output[0].status == "incomplete"


def test_refusal_stream_is_a_refusal_part() -> None:
    events, stream = run_stream([chunk({"refusal": "I can't"}), chunk({"refusal": " do that."}), chunk({}, "stop")])
    assert [event.type for event in events][2:-1] == [
        "response.output_item.added", "response.content_part.added", "response.refusal.delta",
        "response.refusal.delta", "response.refusal.done", "response.content_part.done", "response.output_item.done"]
    assert events[6].refusal == "I can't do that."
    assert stream.final_message()["refusal"] == "I can't do that."


def test_failure_mid_stream_is_response_failed_then_an_error() -> None:
    events, stream = run_stream([chunk({"content": "Half"})], end="fail")
    assert [event.type for event in events][-2:] == ["response.failed", "error"]
    failed, error = events[-2:]
    assert (error.message, error.code) == ("Upstream went away.", "upstream_unreachable")
    # the nested object is what makes the SDK raise APIError (see the integration test)
    assert (error.model_extra or {})["error"]["message"] == "Upstream went away."
    assert failed.response.status == "failed" and failed.response.error is not None
    assert failed.response.error.message == "Upstream went away."
    assert failed.response.output_text == "Half" and failed.response.output[0].status == "incomplete"
    assert stream.feed(chunk({"content": "more"})) == b"" and stream.finish() == b""


def test_an_error_chunk_fails_the_stream() -> None:
    stream = ChatToResponsesStream(request={"model": "gpt-test"}, response_id=RESPONSE_ID, created_at=CREATED)
    error = {"message": "Rate limited.", "code": "rate_limit_exceeded"}
    events = decode(stream.start() + stream.feed({"error": error}))
    assert [event["type"] for event in events] == ["response.created", "response.in_progress",
                                                   "response.failed", "error"]
    failed = EVENTS.validate_python(events[-2])
    assert failed.type == "response.failed" and failed.response.error is not None
    assert failed.response.error.code == "rate_limit_exceeded"


def test_empty_stream_completes_with_no_output() -> None:
    events, stream = run_stream([chunk({"role": "assistant"}, "stop")])
    assert [event.type for event in events] == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1].response.output == [] and stream.final_message() == {"role": "assistant", "content": None}


def test_calls_in_one_chunk_and_a_late_fragment_still_reach_the_final_response() -> None:
    both = chunk({"tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"a":'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]})
    late = chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})
    events, stream = run_stream([both, late, chunk({}, "tool_calls")])
    added = [event for event in events if event.type == "response.output_item.added"]
    assert [(event.output_index, event.item.call_id) for event in added] == [(0, "call_a"), (1, "call_b")]
    final = events[-1].response
    assert [(item.call_id, item.arguments) for item in final.output if item.type == "function_call"] == [
        ("call_a", '{"a":1}'), ("call_b", "{}")]
    assert [call["function"]["arguments"] for call in stream.final_message()["tool_calls"]] == ['{"a":1}', "{}"]


def test_a_streamed_turn_is_stored_as_history_for_the_next_request() -> None:
    request = {"model": "gpt-test", "input": "Weather?", "instructions": "Be brief.", "stream": True}
    _, stream = run_stream(tool_chunks(), request)
    turn = conversation_turn(responses_to_chat(request), stream.final_message())
    follow_up = chat({"input": [{"type": "function_call_output", "call_id": "call_a", "output": "18C"}]}, turn)
    assert [message["role"] for message in follow_up["messages"]] == ["user", "assistant", "tool"]
    assert follow_up["messages"][1]["content"] == "Let me check."
    assert [call["id"] for call in follow_up["messages"][1]["tool_calls"]] == ["call_a", "call_b"]
    assert "reasoning_content" not in follow_up["messages"][1]


AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
    {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}]}


def test_a_call_of_a_namespace_function_comes_back_under_the_callers_names() -> None:
    request = {"model": "gpt-test", "input": "Hi", "tools": [WEATHER_TOOL, AGENTS]}
    calls = [{"id": "call_1", "type": "function", "function": {"name": "multi_agent_v1__close_agent",
                                                                "arguments": "{}"}},
             {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
    response = response_for({"content": None, "tool_calls": calls}, request, finish_reason="tool_calls")
    assert [(item.name, item.namespace) for item in response.output] == [  # type: ignore[union-attr]
        ("close_agent", "multi_agent_v1"), ("get_weather", None)]

    events, stream = run_stream([
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {
            "name": "multi_agent_v1__close_agent", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), usage_chunk()], {**request, "stream": True})
    added = next(event for event in events if event.type == "response.output_item.added")
    assert (added.item.name, added.item.namespace) == ("close_agent", "multi_agent_v1")
    completed = events[-1].response.output[0]
    assert (completed.name, completed.namespace) == ("close_agent", "multi_agent_v1")
    # The conversation keeps the name the chat model knows, for the next turn.
    assert stream.final_message()["tool_calls"][0]["function"]["name"] == "multi_agent_v1__close_agent"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.fixed_dictionaries({"model": st.one_of(st.text(max_size=4), st.none(), st.just(1)),
                              "input": st.one_of(st.text(max_size=4), st.none(), st.just([]))},
                             optional={"stream": st.one_of(st.booleans(), st.none(), st.just(1)),
                                       "store": st.one_of(st.booleans(), st.none())}))
def test_the_simplest_requests_translate_as_the_general_way_does(body: dict[str, Any]) -> None:
    """A request of a model, an input string and at most stream and store skips the general way's checks (an
    `instructions: null` takes it): the same chat body, byte for byte, or the same refusal."""
    def outcome(request: dict[str, Any]) -> bytes | str | None:
        try:
            return orjson.dumps(responses_to_chat(request))
        except ResponsesRequestError as exc:
            return exc.param
    assert outcome(body) == outcome({**body, "instructions": None})
