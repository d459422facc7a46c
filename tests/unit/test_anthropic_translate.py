"""The pure Anthropic ⇄ OpenAI translation: requests, replies, stream events and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.providers.anthropic_translate import (
    ERROR_TYPES,
    AnthropicStreamError,
    AnthropicStreamTranslator,
    TranslationError,
    from_anthropic_response,
    openai_error_from_anthropic,
    to_anthropic_request,
)
from tests.fakes.anthropic import error_event, text_stream, tool_stream

OLD = "2023-06-01"
NEW = "2026-10-21"
MODEL = "claude-sonnet-4-5"
CREATED = 1_760_000_000


def translate(body: dict[str, Any], *, api_version: str = OLD, **kwargs: Any) -> dict[str, Any]:
    return to_anthropic_request({"model": "gpt-alias", **body}, model=MODEL, api_version=api_version, **kwargs)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


# --- requests -------------------------------------------------------------------------------------------------


def test_minimal_request_gets_the_default_max_tokens() -> None:
    assert translate({"messages": [user("Hi")]}) == {
        "model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": [text("Hi")]}],
    }
    assert translate({"messages": [user("Hi")]}, default_max_tokens=100)["max_tokens"] == 100


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70}, 70),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 70),
    ],
)
def test_max_tokens_prefers_max_completion_tokens(fields: dict[str, Any], expected: int) -> None:
    assert translate({"messages": [user("Hi")], **fields})["max_tokens"] == expected


def test_bad_max_tokens_names_the_field() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi")], "max_tokens": "many"})
    assert caught.value.param == "max_tokens"


def test_system_and_developer_messages_become_top_level_system() -> None:
    body = translate({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [text("Answer in French."), text(" Always.")]},
        user("Hi"),
        {"role": "system", "content": "Late rule."},
    ]})
    assert body["system"] == "Be brief.\n\nAnswer in French. Always.\n\nLate rule."
    assert body["messages"] == [{"role": "user", "content": [text("Hi")]}]


def test_multi_turn_conversation_keeps_order_and_merges_same_role_turns() -> None:
    body = translate({"messages": [
        user("One"), user("Two"),
        {"role": "assistant", "content": "Three"},
        {"role": "assistant", "content": [text("Four")]},
        user("Five"),
    ]})
    assert body["messages"] == [
        {"role": "user", "content": [text("One"), text("Two")]},
        {"role": "assistant", "content": [text("Three"), text("Four")]},
        {"role": "user", "content": [text("Five")]},
    ]


def test_images_from_data_and_http_urls() -> None:
    body = translate({"messages": [{"role": "user", "content": [
        text("What is in these?"),
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]})
    assert body["messages"][0]["content"] == [
        text("What is in these?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,notbase64", "ftp://example.com/a.png", "data:;base64,AAAA"])
def test_unusable_image_urls_are_rejected(url: str) -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_unsupported_content_part_is_rejected() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi"), {"role": "user", "content": [text("x"), part]}]})
    assert caught.value.param == "messages[1].content[1].type"


def test_unknown_role_is_rejected() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi"), {"role": "function", "name": "f", "content": "1"}]})
    assert caught.value.param == "messages[1].role"


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }},
    {"type": "function", "function": {"name": "now"}},
]


def test_tools_map_to_input_schema() -> None:
    assert translate({"messages": [user("Hi")], "tools": TOOLS})["tools"] == [
        {"name": "get_weather", "description": "Weather for a city.",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "now"}}, {"type": "tool", "name": "now"}),
    ],
)
def test_every_tool_choice_form(choice: Any, expected: dict[str, Any]) -> None:
    assert translate({"messages": [user("Hi")], "tools": TOOLS, "tool_choice": choice})["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ({"type": "function", "function": {"name": "now"}}, {"type": "tool", "name": "now",
                                                            "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice: Any, expected: dict[str, Any]) -> None:
    body = translate({"messages": [user("Hi")], "tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False})
    assert body["tool_choice"] == expected


def test_no_tool_choice_without_a_request_for_one() -> None:
    body = translate({"messages": [user("Hi")], "tools": TOOLS, "parallel_tool_calls": True})
    assert "tool_choice" not in body


@pytest.mark.parametrize("choice", ["sometimes", {"type": "allowed_tools", "allowed_tools": {}}])
def test_unknown_tool_choice_is_rejected(choice: Any) -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi")], "tools": TOOLS, "tool_choice": choice})
    assert caught.value.param == "tool_choice"


def test_non_function_tool_is_rejected() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi")], "tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert caught.value.param == "tools[0].type"


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_and_consecutive_tool_results() -> None:
    body = translate({"messages": [
        user("Weather in Paris and the time?"),
        {"role": "assistant", "content": None, "tool_calls": [
            tool_call("call_1", "get_weather", '{"city": "Paris"}'), tool_call("call_2", "now", "{}"),
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [text("12:00")]},
        user("Thanks; and tomorrow?"),
    ]})
    assert body["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and the time?")]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [text("12:00")]},
            text("Thanks; and tomorrow?"),
        ]},
    ]


def test_assistant_text_comes_before_its_tool_uses() -> None:
    body = translate({"messages": [user("Hi"), {"role": "assistant", "content": "Let me check.",
                                               "tool_calls": [tool_call("call_9", "now", "")]}]})
    assert body["messages"][1]["content"] == [text("Let me check."), {"type": "tool_use", "id": "call_9",
                                                                       "name": "now", "input": {}}]


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "nope"])
def test_bad_tool_call_arguments_name_the_field(arguments: str) -> None:
    messages = [user("Hi"), {"role": "assistant", "content": "ok"},
                {"role": "assistant", "tool_calls": [tool_call("c0", "now", "{}"), tool_call("c1", "now", arguments)]}]
    with pytest.raises(TranslationError) as caught:
        translate({"messages": messages})
    assert caught.value.param == "messages[2].tool_calls[1].function.arguments"
    assert isinstance(caught.value, ValueError)


def test_tool_message_without_id_is_rejected() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi"), {"role": "tool", "content": "1"}]})
    assert caught.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    assert translate({"messages": [user("Hi")], "stop": stop})["stop_sequences"] == expected


def test_user_becomes_metadata_user_id_and_stream_passes_through() -> None:
    body = translate({"messages": [user("Hi")], "user": "u-42", "stream": True,
                      "stream_options": {"include_usage": True}, "seed": 3, "presence_penalty": 0.1})
    assert body["metadata"] == {"user_id": "u-42"}
    assert body["stream"] is True
    assert not {"stream_options", "seed", "presence_penalty", "user"} & body.keys()


def test_sampling_params_kept_for_2023_06_01() -> None:
    body = translate({"messages": [user("Hi")], "temperature": 0.2, "top_p": 0.9}, api_version=OLD)
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)


def test_sampling_params_dropped_for_2026_10_21() -> None:
    body = translate({"messages": [user("Hi")], "temperature": 0.2, "top_p": 0.9, "top_k": 5}, api_version=NEW)
    assert not {"temperature", "top_p", "top_k"} & body.keys()


def test_several_choices_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"messages": [user("Hi")], "n": 2})
    assert caught.value.param == "n"


def test_empty_text_is_dropped() -> None:
    body = translate({"messages": [user("Hi"), {"role": "assistant", "content": "",
                                               "tool_calls": [tool_call("c1", "now", "{}")]}]})
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "c1", "name": "now", "input": {}}]


# --- responses ------------------------------------------------------------------------------------------------


def anthropic_message(content: list[dict[str, Any]], stop_reason: str = "end_turn",
                      **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard", **usage},
    }


def openai_reply(message: dict[str, Any]) -> dict[str, Any]:
    return from_anthropic_response(message, model="my-claude", created=CREATED)


def test_text_reply() -> None:
    reply = openai_reply(anthropic_message([text("Hello"), text(" there!")]))
    assert reply == {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion", "created": CREATED,
        "model": "my-claude", "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }


def test_tool_use_reply() -> None:
    tool = {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
            "input": {"city": "Paris", "unit": "celsius"}}
    choice = openai_reply(anthropic_message([tool], "tool_use"))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'}},
    ]}


def test_parallel_tool_use_reply_with_text() -> None:
    blocks = [text("Checking both."),
              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}},
              {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}]
    message = openai_reply(anthropic_message(blocks, "tool_use"))["choices"][0]["message"]
    assert message["content"] == "Checking both."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("toolu_1", "get_weather", '{"city":"Zürich"}'), ("toolu_2", "now", "{}"),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
     ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter")],
)
def test_each_stop_reason(stop_reason: str, finish_reason: str) -> None:
    reply = openai_reply(anthropic_message([text("x")], stop_reason))
    assert reply["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    usage = openai_reply(anthropic_message([text("x")], cache_read_input_tokens=1000,
                                           cache_creation_input_tokens=200))["usage"]
    assert usage == {"prompt_tokens": 1212, "completion_tokens": 6, "total_tokens": 1218,
                     "prompt_tokens_details": {"cached_tokens": 1000}}


def test_usage_tolerates_missing_cache_fields_and_maps_thinking_tokens() -> None:
    message = anthropic_message([text("x")])
    message["usage"] = {"input_tokens": 3, "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}}
    assert openai_reply(message)["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 40, "total_tokens": 43, "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }


def test_thinking_blocks_are_not_content() -> None:
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, text("42")]
    assert openai_reply(anthropic_message(blocks))["choices"][0]["message"]["content"] == "42"


# --- streams --------------------------------------------------------------------------------------------------

MSG_ID = "msg_014p7gG3wDgGV9EUtLvnow3U"
STARTED = {"type": "message_start", "message": {
    "id": MSG_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 2, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 100},
}}
STOPPED = ("message_stop", {"type": "message_stop"})
PING = ("ping", {"type": "ping"})


def started() -> tuple[str, dict[str, Any]]:
    return ("message_start", STARTED)


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": value})


def text_delta(index: int, value: str) -> tuple[str, dict[str, Any]]:
    return delta(index, {"type": "text_delta", "text": value})


def json_delta(index: int, value: str) -> tuple[str, dict[str, Any]]:
    return delta(index, {"type": "input_json_delta", "partial_json": value})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, output_tokens: int) -> tuple[str, dict[str, Any]]:
    return ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                              "usage": {"output_tokens": output_tokens}})


def run(events: list[tuple[str, dict[str, Any]]], *, include_usage: bool = False) -> list[dict[str, Any]]:
    translator = AnthropicStreamTranslator(model="my-claude", created=CREATED, include_usage=include_usage)
    chunks = [chunk for event, data in events for chunk in translator.feed(event, data)]
    assert translator.done == (events[-1][0] == "message_stop")
    return chunks


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": f"chatcmpl-{MSG_ID}", "object": "chat.completion.chunk", "created": CREATED, "model": "my-claude",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            "usage": None}


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"chatcmpl-{MSG_ID}", "object": "chat.completion.chunk", "created": CREATED, "model": "my-claude",
            "choices": [], "usage": usage}


ROLE = chunk({"role": "assistant", "content": ""})
TEXT_EVENTS = [
    started(), block_start(0, text("")), PING, text_delta(0, "Hello"), text_delta(0, ", world"),
    block_stop(0), message_delta("end_turn", 15), STOPPED,
]


def test_plain_text_stream() -> None:
    assert run(TEXT_EVENTS) == [ROLE, chunk({"content": "Hello"}), chunk({"content": ", world"}),
                                chunk({}, "stop")]


def test_usage_chunk_comes_last_only_with_include_usage() -> None:
    chunks = run(TEXT_EVENTS, include_usage=True)
    assert chunks[:-1] == run(TEXT_EVENTS)
    assert chunks[-1] == usage_chunk({"prompt_tokens": 572, "completion_tokens": 15, "total_tokens": 587,
                                      "prompt_tokens_details": {"cached_tokens": 100}})


def test_first_chunk_carries_the_role_and_pings_are_ignored() -> None:
    translator = AnthropicStreamTranslator(model="my-claude", created=CREATED, include_usage=True)
    assert translator.feed(*PING) == []
    assert translator.feed(*started()) == [ROLE]
    assert translator.feed(*PING) == []
    assert not translator.done


def test_one_tool_call_stream() -> None:
    tool = {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}
    events = [started(), block_start(0, tool), json_delta(0, ""), json_delta(0, '{"city": "Pa'),
              json_delta(0, 'ris"}'), block_stop(0), message_delta("tool_use", 40), STOPPED]
    assert run(events) == [
        ROLE,
        chunk({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        chunk({}, "tool_calls"),
    ]


def test_parallel_tool_calls_after_text_use_running_tool_indexes() -> None:
    first = {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}
    second = {"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}}
    events = [
        started(), block_start(0, text("")), text_delta(0, "Checking."), block_stop(0),
        block_start(1, first), json_delta(1, '{"ci'), json_delta(1, 'ty":"Oslo"}'), block_stop(1),
        block_start(2, second), json_delta(2, ""), json_delta(2, "{}"), block_stop(2),
        message_delta("tool_use", 80), STOPPED,
    ]
    assert run(events, include_usage=True) == [
        ROLE,
        chunk({"content": "Checking."}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function",
                               "function": {"name": "now", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        usage_chunk({"prompt_tokens": 572, "completion_tokens": 80, "total_tokens": 652,
                     "prompt_tokens_details": {"cached_tokens": 100}}),
    ]


def arguments_by_index(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Concatenate each tool call's argument fragments, as an OpenAI client does, and parse them."""
    fragments: dict[int, str] = {}
    for piece in chunks:
        for choice in piece["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                fragments[call["index"]] = fragments.get(call["index"], "") + call["function"]["arguments"]
    return {index: json.loads(value) for index, value in fragments.items()}


@pytest.mark.parametrize("chunks", [1, 2, 5, 40])
def test_concatenated_arguments_parse_to_the_original_inputs(chunks: int) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("toolu_1", "search", {"query": "café \"quoted\"", "limit": 3, "filters": {"tags": ["a", "b"]}}),
        ("toolu_2", "now", {}),
        ("toolu_3", "get_weather", {"city": "東京"}),
    ]
    out = run(tool_stream(calls, text_before="Let me look.", chunks=chunks))
    assert arguments_by_index(out) == {0: calls[0][2], 1: calls[1][2], 2: calls[2][2]}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out) == "Let me look."
    assert {c["id"] for c in out} == {"chatcmpl-msg_01FakeMessage"}


def test_thinking_and_signature_deltas_are_ignored() -> None:
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    events = [started(), block_start(0, thinking), delta(0, {"type": "thinking_delta", "thinking": "Let me think"}),
              delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}), block_stop(0),
              block_start(1, text("")), text_delta(1, "42"), block_stop(1), message_delta("end_turn", 9), STOPPED]
    assert run(events) == [ROLE, chunk({"content": "42"}), chunk({}, "stop")]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")],
)
def test_stream_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    events = [started(), block_start(0, text("")), text_delta(0, "x"), block_stop(0),
              message_delta(stop_reason, 3), STOPPED]
    assert run(events)[-1] == chunk({}, finish_reason)


def test_message_delta_with_cumulative_input_usage_wins() -> None:
    final = ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"input_tokens": 500, "cache_read_input_tokens": 100,
                                         "cache_creation_input_tokens": 7, "output_tokens": 20}})
    chunks = run([started(), block_start(0, text("")), text_delta(0, "x"), block_stop(0), final, STOPPED],
                 include_usage=True)
    assert chunks[-1]["usage"] == {"prompt_tokens": 607, "completion_tokens": 20, "total_tokens": 627,
                                   "prompt_tokens_details": {"cached_tokens": 100}}


def test_builder_text_stream_translates_whole() -> None:
    out = run(text_stream("The quick brown fox", chunks=3), include_usage=True)
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1]) == "The quick brown fox"
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert out[-1]["choices"] == [] and out[-1]["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in out[:-1])


def test_error_event_raises() -> None:
    translator = AnthropicStreamTranslator(model="my-claude", created=CREATED, include_usage=False)
    translator.feed(*started())
    translator.feed(*text_delta(0, "partial"))
    with pytest.raises(AnthropicStreamError) as caught:
        translator.feed(*error_event("overloaded_error", "Overloaded"))
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "Overloaded")
    assert not translator.done


# --- errors ---------------------------------------------------------------------------------------------------


def anthropic_error(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message},
                       "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}).encode()


@pytest.mark.parametrize(
    ("status", "error_type", "client_status", "openai_type"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (401, "authentication_error", 401, "authentication_error"),
        (402, "billing_error", 402, "insufficient_quota"),
        (403, "permission_error", 403, "permission_error"),
        (404, "not_found_error", 404, "invalid_request_error"),
        (413, "request_too_large", 413, "invalid_request_error"),
        (429, "rate_limit_error", 429, "rate_limit_error"),
        (500, "api_error", 500, "server_error"),
        (529, "overloaded_error", 503, "server_error"),
    ],
)
def test_anthropic_errors_map_to_openai_errors(status: int, error_type: str, client_status: int,
                                               openai_type: str) -> None:
    assert openai_error_from_anthropic(status, anthropic_error(error_type, "Upstream says no.")) == (
        client_status, {"message": "Upstream says no.", "type": openai_type, "param": None, "code": error_type},
    )
    assert ERROR_TYPES[error_type] == openai_type


def test_unknown_error_type_is_kept_as_code() -> None:
    status, error = openai_error_from_anthropic(409, anthropic_error("conflict_error", "Busy."))
    assert (status, error["type"], error["code"], error["message"]) == (409, "upstream_error", "conflict_error",
                                                                        "Busy.")


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
    (b"", "Upstream returned HTTP 502."),
    (b'{"detail": "nope"}', '{"detail": "nope"}'),
])
def test_non_anthropic_error_bodies_keep_their_text(body: bytes, message: str) -> None:
    assert openai_error_from_anthropic(502, body) == (502, {"message": message, "type": "upstream_error",
                                                            "param": None, "code": None})
