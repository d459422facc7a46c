"""The pure Gemini ⇄ OpenAI translation: schemas, messages, tools, replies, stream events and errors."""

from __future__ import annotations

import base64
import itertools
import struct
from typing import Any

import orjson
import pytest

from sluice.providers.gemini_translate import (
    GeminiStreamError,
    GeminiStreamTranslator,
    TranslationError,
    from_gemini_embeddings,
    from_gemini_response,
    gemini_error,
    gemini_schema,
    model_path,
    openai_usage,
    to_gemini_embeddings,
    to_gemini_request,
)

USER = {"role": "user", "content": "hi"}


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def request(**fields: Any) -> dict[str, Any]:
    return to_gemini_request({"model": "m", "messages": [USER], **fields})


# --- schemas --------------------------------------------------------------------------------------------------


def test_schema_keeps_the_openapi_subset_and_lists_what_it_dropped() -> None:
    dropped: list[str] = []
    schema = gemini_schema({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "note": {"type": ["string", "null"], "description": "optional"},
            "either": {"type": ["string", "integer"]},
            "kind": {"const": "fixed"},
            "level": {"enum": [1, 2]},
            "tags": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
        },
    }, dropped)
    assert schema == {"type": "OBJECT", "properties": {
        "when": {"type": "STRING", "format": "date-time"},
        "mail": {"type": "STRING"},
        "note": {"type": "STRING", "nullable": True, "description": "optional"},
        "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        "kind": {"enum": ["fixed"]},
        "level": {},
        "tags": {"type": "ARRAY", "items": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}},
    }}
    assert sorted(dropped) == ["schema.$schema", "schema.additionalProperties", "schema.properties.level.enum",
                               "schema.properties.mail.format"]


def test_schema_inlines_local_refs_and_stops_at_recursive_ones() -> None:
    dropped: list[str] = []
    schema = gemini_schema({
        "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}}},
                  "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City", "description": "where"}, "tree": {"$ref": "#/$defs/Node"},
                       "far": {"$ref": "https://example.com/schema.json"}},
    }, dropped)
    assert schema["properties"]["city"] == {"type": "OBJECT", "properties": {"name": {"type": "STRING"}},
                                            "description": "where"}
    assert schema["properties"]["far"] == {}
    assert "schema.properties.far.$ref" in dropped
    assert any(path.startswith("schema.properties.tree") and path.endswith("$ref") for path in dropped)


# --- requests -------------------------------------------------------------------------------------------------


def test_system_and_developer_messages_become_one_system_instruction() -> None:
    body = to_gemini_request({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": [{"type": "text",
                                                                                      "text": "Be kind."}]},
        USER]})
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nBe kind."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_images_become_inline_data_or_file_data() -> None:
    body = to_gemini_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?size=2"}},
    ]}]})
    assert body["contents"][0]["parts"] == [
        {"text": "compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?size=2", "mimeType": "image/jpeg"}},
    ]
    with pytest.raises(TranslationError) as caught:
        to_gemini_request({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]})
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_tool_results_name_their_call_and_merge_into_one_turn() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
             {"id": "b", "type": "function", "function": {"name": "time", "arguments": ""},
              "extra_content": {"google": {"thought_signature": "sig=="}}}]
    body = to_gemini_request({"model": "m", "messages": [
        USER, {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "b", "content": "noon"}]})
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "time", "args": {}}, "thoughtSignature": "sig=="},
    ]
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "time", "response": {"output": "noon"}}},
    ]}


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        to_gemini_request({"model": "m", "messages": [USER, {"role": "tool", "tool_call_id": "x", "content": "r"}]})
    assert caught.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
])
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    assert request(tool_choice=choice)["toolConfig"] == {"functionCallingConfig": config}


def test_bad_tool_choice_names_the_field() -> None:
    with pytest.raises(TranslationError) as caught:
        request(tool_choice="sometimes")
    assert caught.value.param == "tool_choice"


def test_a_tool_without_properties_is_declared_without_parameters() -> None:
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    assert request(tools=tools)["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_generation_config() -> None:
    config = request(max_tokens=10, max_completion_tokens=20, n=3, seed=7, stop=["a", "b"],
                     response_format={"type": "json_object"})["generationConfig"]
    assert config == {"maxOutputTokens": 20, "candidateCount": 3, "seed": 7, "stopSequences": ["a", "b"],
                      "responseMimeType": "application/json"}
    with pytest.raises(TranslationError, match="positive integer"):
        request(max_tokens=0)


def test_embeddings_request_and_model_path() -> None:
    assert to_gemini_embeddings({"input": "x"}, "models/e") == {
        "requests": [{"model": "models/e", "content": {"parts": [{"text": "x"}]}}]}
    with pytest.raises(TranslationError) as caught:
        to_gemini_embeddings({"input": [1, 2, 3]}, "e")
    assert caught.value.param == "input"
    assert model_path("models/gemini-2.5-flash") == model_path("gemini-2.5-flash") == "models/gemini-2.5-flash"


# --- replies --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    reply = from_gemini_response({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]},
                                 model="m", created=1)
    assert reply["choices"][0]["finish_reason"] == expected


def test_reply_with_thoughts_and_a_function_call() -> None:
    parts = [{"text": "Let me think.", "thought": True}, {"text": "Calling."},
             {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"}]
    reply = from_gemini_response({"candidates": [{"content": {"parts": parts, "role": "model"},
                                                  "finishReason": "STOP"}], "responseId": "r1"},
                                 model="m", created=1, new_id=ids())
    message = reply["choices"][0]["message"]
    assert reply["id"] == "chatcmpl-r1" and reply["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] == "Calling." and message["reasoning_content"] == "Let me think."
    assert message["tool_calls"] == [{"id": "call_0", "type": "function",
                                      "function": {"name": "f", "arguments": '{"a":1}'},
                                      "extra_content": {"google": {"thought_signature": "sig"}}}]


def test_usage_counts_thoughts_as_completion_and_cached_tokens() -> None:
    assert openai_usage({"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                         "cachedContentTokenCount": 60, "totalTokenCount": 150}) == {
        "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 30}}


def test_blocked_prompt_is_one_empty_content_filter_choice() -> None:
    reply = from_gemini_response({"promptFeedback": {"blockReason": "SAFETY"}}, model="m", created=1)
    assert [(c["message"]["content"], c["finish_reason"]) for c in reply["choices"]] == [(None, "content_filter")]
    with pytest.raises(ValueError):
        from_gemini_response({"usageMetadata": {}}, model="m", created=1)


def test_embeddings_reply_as_base64_float32() -> None:
    reply = from_gemini_embeddings({"embeddings": [{"values": [0.5, -1.0]}]}, model="e", encoding_format="base64")
    raw = base64.b64decode(reply["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0) and reply["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


# --- errors ---------------------------------------------------------------------------------------------------


def test_rate_limit_error_takes_its_retry_delay() -> None:
    body = orjson.dumps({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                "retryDelay": "6.2s"}]}})
    error = gemini_error(429, body)
    assert (error.status, error.type, error.code, error.retry_after) == (429, "rate_limit_error",
                                                                         "RESOURCE_EXHAUSTED", "7")


def test_too_long_prompt_reads_as_context_length_exceeded() -> None:
    body = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                   "The input token count (2000000) exceeds the maximum number of tokens allowed "
                                   "(1048576)."}})
    assert gemini_error(400, body).code == "context_length_exceeded"


def test_error_that_is_not_json_keeps_its_text() -> None:
    error = gemini_error(502, b"<html>Bad Gateway</html>")
    assert (error.status, error.type, error.message) == (502, "server_error", "<html>Bad Gateway</html>")


# --- streams --------------------------------------------------------------------------------------------------


def event(parts: list[Any], finish: str | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "responseId": "r9", **extra}


def test_stream_role_once_then_text_finish_and_usage() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=True)
    chunks = translator.feed(event([{"text": "Hel"}]))
    chunks += translator.feed(event([{"text": "lo"}], "MAX_TOKENS",
                                    usageMetadata={"promptTokenCount": 3, "candidatesTokenCount": 2}))
    chunks += translator.end()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
    assert {c["id"] for c in chunks} == {"chatcmpl-r9"}


def test_stream_function_calls_arrive_whole_and_are_numbered() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False, new_id=ids())
    first = translator.feed(event([{"functionCall": {"name": "f", "args": {"x": 1}}}]))
    second = translator.feed(event([{"functionCall": {"name": "g"}}], "STOP"))
    calls = first[0]["choices"][0]["delta"]["tool_calls"] + second[0]["choices"][0]["delta"]["tool_calls"]
    assert [(c["index"], c["id"], c["function"]["arguments"]) for c in calls] == [(0, "call_0", '{"x":1}'),
                                                                                   (1, "call_1", "{}")]
    assert second[-1]["choices"][0]["finish_reason"] == "tool_calls" and translator.end() == []


def test_stream_that_never_finishes_or_reports_an_error() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False)
    translator.feed(event([{"text": "cut"}]))
    with pytest.raises(ValueError):
        translator.end()
    with pytest.raises(GeminiStreamError):
        translator.feed({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}})
    assert gemini_error(200, {"error": {"code": 503, "message": "busy"}}).status == 503


def test_stream_blocked_prompt_finishes_with_content_filter() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False)
    chunks = translator.feed({"promptFeedback": {"blockReason": "SAFETY"}})
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, "content_filter"]
    assert translator.end() == []
