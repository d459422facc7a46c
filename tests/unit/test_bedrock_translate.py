"""The pure OpenAI ⇄ Bedrock Converse translation: requests, replies, errors, eventstream decoding, stream chunks."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import BedrockProviderConfig, ConfigError, parse_config
from sluice.providers.anthropic_request import TranslationError
from sluice.providers.bedrock_request import converse_path, to_converse_request
from sluice.providers.bedrock_response import bedrock_error, error_type_name, from_converse_response
from sluice.providers.bedrock_signing import RequestSigner
from sluice.providers.bedrock_stream import (
    BedrockStreamError,
    BedrockStreamTranslator,
    EventDecoder,
    FramingError,
    StreamEvent,
)
from tests.fakes.bedrock import encode_message, event_message, exception

PNG = "iVBORw0KGgo="
USER: Any = [{"role": "user", "content": "hi"}]
TOOL: Any = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def chat(**body: Any) -> dict[str, Any]:
    return to_converse_request({"model": "m", "messages": USER, **body})


def test_the_model_id_is_encoded_whole_in_the_path() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7"
    assert converse_path(arn, stream=True) == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-7"
        "/converse-stream")
    assert converse_path("amazon.nova-lite-v1:0", stream=False) == "/model/amazon.nova-lite-v1%3A0/converse"


def test_system_and_developer_messages_become_system_blocks() -> None:
    body = to_converse_request({"messages": [
        {"role": "system", "content": "one"}, {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        {"role": "system", "content": ""}, *USER]})
    assert body == {"system": [{"text": "one"}, {"text": "two"}],
                    "messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_images_come_from_data_urls_only() -> None:
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    body = to_converse_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, part]}]})
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    with pytest.raises(TranslationError, match="not an http") as caught:
        to_converse_request({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})
    assert caught.value.param == "messages[0].content[0].image_url.url"
    for url in ("data:image/tiff;base64,AAAA", "data:image/png,AAAA", "data:image/png;base64,***"):
        with pytest.raises(TranslationError):
            to_converse_request({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]})


def test_tool_results_and_the_next_user_text_form_one_user_message() -> None:
    body = to_converse_request({"tools": [TOOL], "messages": [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "a", "content": "one"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "thanks"}]})
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [{"toolUse": {"toolUseId": "a", "name": "f", "input": {"x": 1}}},
                                              {"toolUse": {"toolUseId": "b", "name": "f", "input": {}}}]
    assert body["messages"][2]["content"] == [{"toolResult": {"toolUseId": "a", "content": [{"text": "one"}]}},
                                              {"toolResult": {"toolUseId": "b", "content": [{"text": "two"}]}},
                                              {"text": "thanks"}]


def test_bad_tool_call_arguments_are_refused_with_their_place() -> None:
    with pytest.raises(TranslationError) as caught:
        to_converse_request({"messages": [*USER, {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]})
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"auto": {}}), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert chat(tools=[TOOL], tool_choice=choice)["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_sends_no_tools_and_a_tool_without_parameters_gets_an_empty_schema() -> None:
    assert "toolConfig" not in chat(tools=[TOOL], tool_choice="none")
    bare = {"type": "function", "function": {"name": "g", "description": "G"}}
    assert chat(tools=[bare])["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "g", "description": "G", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    with pytest.raises(TranslationError):
        chat(tools=[TOOL], tool_choice="sometimes")


def test_inference_config_and_what_converse_cannot_do() -> None:
    assert chat(max_completion_tokens=5, max_tokens=9, stop=["a", "b"])["inferenceConfig"] == {
        "maxTokens": 5, "stopSequences": ["a", "b"]}
    for refused in ({"n": 2}, {"response_format": {"type": "json_object"}}, {"max_tokens": 0}, {"stop": 3}):
        with pytest.raises(TranslationError):
            chat(**refused)


def test_reply_with_reasoning_tool_use_and_cached_usage() -> None:
    reply = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "thinking", "signature": "sig"}}},
        {"text": "a"}, {"text": "b"},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"é": [1, 2]}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 12, "cacheReadInputTokens": 5}}
    chat_reply = from_converse_response(reply, model="m", created=1, completion_id="chatcmpl-1")
    message = chat_reply["choices"][0]["message"]
    assert message["content"] == "ab" and message["reasoning_content"] == "thinking"
    assert message["tool_calls"] == [{"id": "t1", "type": "function",
                                      "function": {"name": "f", "arguments": '{"é":[1,2]}'}}]
    assert chat_reply["choices"][0]["finish_reason"] == "tool_calls"
    assert chat_reply["usage"] == {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12,
                                   "prompt_tokens_details": {"cached_tokens": 5}}


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("guardrail_intervened",
                                                                                 "content_filter"),
    ("content_filtered", "content_filter"), ("something_new", "stop"),
])
def test_stop_reasons(stop: str, finish: str) -> None:
    reply = {"output": {"message": {"content": [{"text": "x"}]}}, "stopReason": stop}
    assert from_converse_response(reply, model="m", created=1)["choices"][0]["finish_reason"] == finish


def test_a_reply_without_content_is_not_a_reply() -> None:
    with pytest.raises((KeyError, ValueError)):
        from_converse_response({"output": {}}, model="m", created=1)


@pytest.mark.parametrize(("status", "header", "expected_status", "code"), [
    (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 429, "ThrottlingException"),
    (408, "ModelTimeoutException", 504, "ModelTimeoutException"),
    (424, "ModelErrorException", 502, "ModelErrorException"),
    (503, "ServiceUnavailableException", 503, "ServiceUnavailableException"),
    (418, None, 418, None),
])
def test_errors_by_their_type(status: int, header: str | None, expected_status: int, code: str | None) -> None:
    error = bedrock_error(status, b'{"message": "nope"}', header)
    assert (error.status, error.code, error.message) == (expected_status, code, "nope")


def test_error_details() -> None:
    too_long = bedrock_error(400, b'{"message": "Input is too long for requested model."}', "ValidationException")
    assert too_long.code == "context_length_exceeded" and too_long.type == "invalid_request_error"
    denied = bedrock_error(403, b'{"message": "The security token included in the request is invalid."}',
                           "UnrecognizedClientException")
    assert denied.type == "permission_error" and "access_key_id" in denied.message
    assert bedrock_error(500, b"<html>oops</html>").message == "<html>oops</html>"
    assert bedrock_error(400, {"__type": "com.amazon.coral#ValidationException", "message": "x"}).code == \
        "ValidationException"
    assert error_type_name("throttlingException") == "ThrottlingException"


def test_signer_adds_the_signature_and_the_session_token() -> None:
    signer = RequestSigner("AKID", "secret", "token", "eu-west-3")
    headers = signer.signature_headers("POST", "https://bedrock-runtime.eu-west-3.amazonaws.com/model/m/converse",
                                       {"Content-Type": "application/json"}, b"{}")
    assert set(headers) == {"Authorization", "X-Amz-Date", "X-Amz-Security-Token"}
    assert headers["X-Amz-Security-Token"] == "token"
    assert "/eu-west-3/bedrock/aws4_request" in headers["Authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in headers["Authorization"]


# --- eventstream and stream translation -------------------------------------------------------------------------


@given(headers=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=4),
       payload=st.binary(max_size=300))
def test_the_fakes_encoder_round_trips_through_botocore(headers: dict[str, str], payload: bytes) -> None:
    headers = {name: value for name, value in headers.items() if len(name.encode()) < 256}
    buffer = EventStreamBuffer()
    buffer.add_data(encode_message(headers, payload) * 2)
    messages = list(buffer)
    assert [(m.headers, m.payload) for m in messages] == [(headers, payload)] * 2


def test_decoder_keeps_partial_messages_and_refuses_corrupt_ones() -> None:
    data = event_message("messageStart", {"role": "assistant"})
    decoder = EventDecoder()
    assert list(decoder.feed(data[:10])) == [] and decoder.pending == 10
    events = list(decoder.feed(data[10:]))
    assert [e.event_type for e in events] == ["messageStart"] and decoder.pending == 0
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    with pytest.raises(FramingError):
        list(EventDecoder().feed(bytes(corrupt)))
    error = encode_message({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"},
                           b"")
    assert list(EventDecoder().feed(error)) == [StreamEvent("exception", "InternalFailure", {"message": "boom"})]


def translated(events: list[tuple[str, dict[str, Any]]], include_usage: bool = True) -> list[dict[str, Any]]:
    translator = BedrockStreamTranslator(model="m", created=1, include_usage=include_usage, completion_id="c")
    chunks = [chunk for name, payload in events for chunk in translator.feed(StreamEvent("event", name, payload))]
    return chunks + translator.end()


def test_stream_chunks_for_reasoning_text_and_a_tool_call() -> None:
    chunks = translated([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "ok"}}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
    ])
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas[:4] == [{"role": "assistant", "content": ""}, {"reasoning_content": "hmm"}, {"content": "ok"},
                          {"tool_calls": [{"index": 0, "id": "t", "type": "function",
                                           "function": {"name": "f", "arguments": ""}}]}]
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert chunks[5]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[6]["usage"]["total_tokens"] == 3 and len(chunks) == 7
    assert {c["id"] for c in chunks} == {"c"}


def test_stream_without_message_stop_and_without_usage() -> None:
    with pytest.raises(ValueError, match="messageStop"):
        translated([("messageStart", {}), ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})])
    chunks = translated([("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}),
                         ("messageStop", {"stopReason": "max_tokens"})], include_usage=False)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # the role comes first even without messageStart
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_exceptions_and_misplaced_deltas() -> None:
    translator = BedrockStreamTranslator(model="m", created=1, include_usage=False)
    event = list(EventDecoder().feed(exception("throttlingException", "slow")))[0]
    with pytest.raises(BedrockStreamError) as caught:
        translator.feed(event)
    assert bedrock_error(200, caught.value.payload, caught.value.error_type).status == 429
    with pytest.raises(ValueError):
        translator.feed(StreamEvent("event", "contentBlockDelta",
                                    {"contentBlockIndex": 4, "delta": {"toolUse": {"input": "{"}}}))


def test_botocore_is_imported_only_with_a_bedrock_provider() -> None:
    script = ("import sys\nfrom sluice.config import parse_config\nfrom sluice.providers.registry import "
              "build_providers\nbuild_providers(parse_config('providers:\\n  m: {type: mock}\\n', 't.yaml'))\n"
              "print('botocore' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_config_fills_the_regional_endpoint_and_refuses_health_checks() -> None:
    entry = "{type: bedrock, region: eu-central-1, access_key_id: AKID, secret_access_key: s%s}"
    config = parse_config(f"providers:\n  aws: {entry % ''}\n", "t.yaml")
    provider = config.providers["aws"]
    assert isinstance(provider, BedrockProviderConfig)
    assert provider.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    with pytest.raises(ConfigError, match="SigV4"):
        parse_config(f"providers:\n  aws: {entry % ', health_check: true'}\n", "t.yaml")
    with pytest.raises(ConfigError, match="SigV4"):
        parse_config(f"providers:\n  aws: {entry % ''}\nmodels:\n  - {{name: x, deployments: [{{provider: aws, "
                     "model: m, health_check: true}]}\n", "t.yaml")
