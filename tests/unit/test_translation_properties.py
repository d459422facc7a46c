"""Property tests of the OpenAI ⇄ Anthropic translation (`sluice/providers/anthropic_*.py`): generated requests,
replies and stream event sequences, checked for what must hold whatever the input, never for fixed outputs."""

from __future__ import annotations

import json
from typing import Any, AnyStr

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.http.schemas import ChatCompletionRequest
from sluice.providers.anthropic_translate import (
    AnthropicStreamTranslator,
    TranslationError,
    from_anthropic_response,
    openai_error_from_anthropic,
    to_anthropic_request,
)
from sluice.stream_reader import assemble_stream
from sluice.streaming import SSEDecoder

PROPERTIES = settings(max_examples=150, deadline=None, derandomize=True, database=None)
OPENAI_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}
MODEL, CREATED = "claude-test", 1_760_000_000

text = st.text(max_size=12)
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10).map(lambda s: "toolu_" + s)
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False,
                                                                                      allow_infinity=False) | text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)
json_objects = st.dictionaries(text, json_values, max_size=4)
parts = st.lists(st.builds(lambda t: {"type": "text", "text": t}, text), min_size=1, max_size=3)
content = st.none() | text | parts


def part_texts(value: Any) -> list[str]:
    """The non-empty texts of OpenAI message content, in order (Anthropic refuses empty text blocks)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [part["text"] for part in value if part["text"]]


# --- requests -------------------------------------------------------------------------------------------------

system_messages = st.builds(lambda role, body: {"role": role, "content": body},
                            st.sampled_from(["system", "developer"]), text | parts)
user_messages = st.builds(lambda body: {"role": "user", "content": body}, content)


@st.composite
def assistant_messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(content)}
    calls = draw(st.lists(st.tuples(ids, names, json_objects, st.booleans()), max_size=3, unique_by=lambda c: c[0]))
    if calls:
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": {
            "name": name, "arguments": json.dumps(args, indent=2 if pretty else None)}}
            for call_id, name, args, pretty in calls]
    return message


tool_messages = st.builds(lambda call_id, body: {"role": "tool", "tool_call_id": call_id, "content": body}, ids,
                          text | parts)
tools = st.lists(st.builds(lambda name, description, parameters: {
    "type": "function", "function": {"name": name, "description": description, "parameters": parameters}},
    names, st.none() | text, st.none() | st.just({"type": "object", "properties": {"x": {"type": "string"}}})),
    max_size=3)


@st.composite
def chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": draw(st.lists(
        system_messages | user_messages | assistant_messages() | tool_messages, min_size=1, max_size=8))}
    for name, values in (("stop", st.none() | text | st.lists(text, max_size=4)),
                         ("max_tokens", st.none() | st.integers(1, 10**6)),
                         ("max_completion_tokens", st.none() | st.integers(1, 10**6)),
                         ("tools", tools), ("user", st.none() | text), ("stream", st.none() | st.booleans())):
        value = draw(values)
        if value is not None and draw(st.booleans()):
            body[name] = value
    return body


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return to_anthropic_request(body, model=MODEL, api_version="2023-06-01", default_max_tokens=777)


@PROPERTIES
@given(chat_requests())
def test_a_request_keeps_every_message_in_order_with_system_extracted(body: dict[str, Any]) -> None:
    out = translate(body)
    messages = body["messages"]
    system = [text for m in messages if m["role"] in ("system", "developer") for text in ["".join(part_texts(
        m["content"]))] if text]
    assert out.get("system", "") == "\n\n".join(system)
    turns = out["messages"]
    assert all(turn["role"] in ("user", "assistant") and turn["content"] for turn in turns)
    assert all(a["role"] != b["role"] for a, b in zip(turns, turns[1:], strict=False)), "roles must alternate"

    expected: list[tuple[str, Any]] = []  # (role, block summary) for every non-system message, in order
    for m in messages:
        if m["role"] == "tool":
            result = m["content"] if isinstance(m["content"], str) else [
                {"type": "text", "text": t} for t in part_texts(m["content"])]
            expected.append(("user", ("tool_result", m["tool_call_id"], result)))
        elif m["role"] in ("user", "assistant"):
            expected.extend((m["role"], ("text", t)) for t in part_texts(m["content"]))
            expected.extend(("assistant", ("tool_use", c["id"], c["function"]["name"],
                                           json.loads(c["function"]["arguments"]))) for c in m.get("tool_calls", ()))
    got = [(turn["role"], _summary(block)) for turn in turns for block in turn["content"]]
    assert got == expected


def _summary(block: dict[str, Any]) -> tuple[Any, ...]:
    if block["type"] == "text":
        return ("text", block["text"])
    if block["type"] == "tool_use":
        return ("tool_use", block["id"], block["name"], block["input"])
    return ("tool_result", block["tool_use_id"], block["content"])


@PROPERTIES
@given(chat_requests())
def test_a_request_carries_its_limits_stops_and_tools(body: dict[str, Any]) -> None:
    out = translate(body)
    assert out["model"] == MODEL
    assert out["max_tokens"] == body.get("max_completion_tokens", body.get("max_tokens", 777))
    stop = body.get("stop")
    assert out.get("stop_sequences") == (None if stop is None else [stop] if isinstance(stop, str) else stop)
    assert [tool["name"] for tool in out.get("tools", [])] == [tool["function"]["name"] for tool in body.get(
        "tools", [])]
    for tool, given_tool in zip(out.get("tools", []), body.get("tools", []), strict=True):
        parameters = given_tool["function"]["parameters"]
        assert tool["input_schema"] == (parameters or {"type": "object", "properties": {}})
        assert tool.get("description") == (given_tool["function"]["description"] or None)
    assert out.get("stream") == body.get("stream")
    assert ("metadata" in out) == ("user" in body)


huge_number = '{"n": ' + "1" * 5000 + "}"
deep_array = '{"n": ' + "[" * 100_000 + "]" * 100_000 + "}"


@PROPERTIES
@given(st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name"]),
                       json_values | st.lists(st.dictionaries(text, json_values, max_size=3), max_size=2),
                       max_size=5), json_objects)
@example({"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": huge_number}}]}, {})
@example({"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": deep_array}}]}, {})
def test_a_request_the_edge_accepts_translates_or_is_refused_as_invalid(message: dict[str, Any],
                                                                        extra: dict[str, Any]) -> None:
    """Whatever passes Sluice's own request schema either translates or raises TranslationError (a 400 naming the
    field), never another exception (a 500)."""
    body = {"model": "m", "messages": [message], **{key: value for key, value in extra.items() if key != "messages"}}
    try:
        ChatCompletionRequest.model_validate(body)
    except ValueError:
        return  # the edge answers 400 before any translation
    try:
        translate(body)
    except TranslationError as exc:
        assert str(exc)


# --- replies --------------------------------------------------------------------------------------------------

stop_reasons = st.none() | st.sampled_from(["end_turn", "stop_sequence", "pause_turn", "max_tokens", "tool_use",
                                            "refusal", "model_context_window_exceeded"]) | names
counts = st.integers(0, 10**6)
usages = st.fixed_dictionaries({"input_tokens": counts, "output_tokens": counts}, optional={
    "cache_read_input_tokens": st.none() | counts, "cache_creation_input_tokens": st.none() | counts})
blocks = st.lists(
    st.builds(lambda t: {"type": "text", "text": t}, text)
    | st.builds(lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a}, ids, names, json_objects)
    | st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig"}, text),
    max_size=5, unique_by=lambda block: block.get("id", id(block)))
messages = st.builds(lambda message_id, content, reason, usage: {
    "id": message_id, "type": "message", "role": "assistant", "model": MODEL, "content": content,
    "stop_reason": reason, "stop_sequence": None, "usage": usage},
    st.text("abcdef0123456789", min_size=1, max_size=8).map(lambda s: "msg_" + s), blocks, stop_reasons, usages)


def expected_usage(usage: dict[str, Any]) -> tuple[int, int, int, int]:
    cached, written = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    prompt = usage["input_tokens"] + cached + written
    return prompt, usage["output_tokens"], prompt + usage["output_tokens"], cached


def usage_of(usage: dict[str, Any]) -> tuple[int, int, int, int]:
    return (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"])


@PROPERTIES
@given(messages)
def test_a_reply_keeps_its_text_tool_calls_usage_and_reason(message: dict[str, Any]) -> None:
    reply = from_anthropic_response(message, model="alias", created=CREATED)
    choice = reply["choices"][0]
    texts = [block["text"] for block in message["content"] if block["type"] == "text"]
    assert choice["message"]["content"] == ("".join(texts) if texts else None)
    uses = [block for block in message["content"] if block["type"] == "tool_use"]
    calls = choice["message"].get("tool_calls", [])
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (u["id"], u["name"], u["input"]) for u in uses]
    assert usage_of(reply["usage"]) == expected_usage(message["usage"])
    assert (choice["finish_reason"] is None) == (message["stop_reason"] is None)
    assert choice["finish_reason"] in OPENAI_FINISH_REASONS | {None}
    assert reply["id"].endswith(message["id"]) and reply["model"] == "alias"


# --- streams --------------------------------------------------------------------------------------------------


def split_text(whole: AnyStr, cuts: list[int]) -> list[AnyStr]:
    """`whole` cut at the given offsets (each taken modulo its length + 1)."""
    points = sorted({cut % (len(whole) + 1) for cut in cuts})
    return [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]


@st.composite
def streams(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A message and its events, each delta a whole number of characters."""
    message = draw(messages.filter(lambda m: m["stop_reason"] is not None))
    usage = message["usage"]
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            whole, start, kind, key = block["text"], {"type": "text", "text": ""}, "text_delta", "text"
        elif block["type"] == "tool_use":
            whole, start = json.dumps(block["input"], indent=draw(st.none() | st.just(1))), {**block, "input": {}}
            kind, key = "input_json_delta", "partial_json"
            if not block["input"] and draw(st.booleans()):
                whole = ""  # Anthropic streams no input for a call without arguments (or one empty delta)
        else:
            whole, start, kind, key = block["thinking"], {**block, "thinking": ""}, "thinking_delta", "thinking"
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": start}))
        for piece in split_text(whole, draw(st.lists(st.integers(0, len(whole)), max_size=4))):
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": kind, key: piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        if draw(st.booleans()):
            events.append(("ping", {"type": "ping"}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]},
                                     "usage": {"output_tokens": usage["output_tokens"]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return message, events


def translated(events: list[tuple[str, dict[str, Any]]], *, include_usage: bool = True) -> list[dict[str, Any]]:
    translator = AnthropicStreamTranslator(model="alias", created=CREATED, include_usage=include_usage)
    chunks = [chunk for event, data in events for chunk in translator.feed(event, data)]
    assert translator.done
    return chunks


@PROPERTIES
@given(streams())
def test_a_stream_adds_up_to_the_same_reply_as_the_whole_message(case: tuple[dict[str, Any], list[Any]]) -> None:
    """Streamed or not, the same Anthropic message reads the same in OpenAI's format: text concatenated, each tool
    call's arguments joined to its input, the finish reason and the usage."""
    message, events = case
    chunks = translated(events)
    reply = from_anthropic_response(message, model="alias", created=CREATED)
    body, _, usage = assemble_stream(chunks)  # the stream reader's joining, as the request log does it
    assert body is not None and usage is not None
    streamed_message, whole = body["choices"][0]["message"], reply["choices"][0]["message"]
    assert streamed_message["content"] == (whole["content"] or None)
    streamed_calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                      for c in streamed_message.get("tool_calls", [])]
    assert streamed_calls == [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                              for c in whole.get("tool_calls", [])]
    assert body["choices"][0]["finish_reason"] == reply["choices"][0]["finish_reason"]
    assert usage_of(usage) == usage_of(reply["usage"]) == expected_usage(message["usage"])
    assert {chunk["id"] for chunk in chunks} == {reply["id"]}
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == "alias" for chunk in chunks)


@PROPERTIES
@given(streams())
def test_a_tool_calls_argument_deltas_join_to_exactly_the_json_anthropic_sent(
        case: tuple[dict[str, Any], list[Any]]) -> None:
    message, events = case
    sent: dict[str, str] = {}
    for event, data in events:
        if event == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            block = message["content"][data["index"]]
            sent[block["id"]] = sent.get(block["id"], "") + data["delta"]["partial_json"]
    joined: dict[int, str] = {}
    opened: dict[int, str] = {}
    for chunk in translated(events):
        for call in (chunk["choices"] or [{}])[0].get("delta", {}).get("tool_calls", []):
            if "id" in call:
                opened[call["index"]] = call["id"]
            joined[call["index"]] = joined.get(call["index"], "") + call["function"]["arguments"]
    assert sorted(opened) == list(range(len(opened)))
    assert {opened[index]: joined[index] for index in opened} == {  # "{}" for a call Anthropic sent no input for
        block["id"]: sent.get(block["id"]) or "{}" for block in message["content"] if block["type"] == "tool_use"}


@PROPERTIES
@given(streams(), st.data())
def test_a_stream_read_from_sse_bytes_cut_anywhere_translates_the_same(case: tuple[dict[str, Any], list[Any]],
                                                                        data: st.DataObject) -> None:
    """Anthropic's SSE bytes, cut at arbitrary points and decoded by the strict decoder, give the same chunks."""
    _, events = case
    raw = b"".join(f"event: {event}\n".encode() + b"data: " + orjson.dumps(body) + b"\n\n" for event, body in events)
    decoder = SSEDecoder(strict=True)
    decoded = [(event.event, orjson.loads(event.data))
               for chunk in split_text(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
               for event in decoder.feed(chunk)]
    assert decoded == events
    assert translated(decoded) == translated(events)


@PROPERTIES
@given(streams())
def test_usage_comes_once_at_the_end_and_only_when_asked_for(case: tuple[dict[str, Any], list[Any]]) -> None:
    _, events = case
    with_usage, without = translated(events), translated(events, include_usage=False)
    assert [chunk["usage"] is not None for chunk in with_usage] == [False] * (len(with_usage) - 1) + [True]
    assert with_usage[-1]["choices"] == [] and with_usage[:-1] == without
    assert all(chunk["usage"] is None for chunk in without)
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in without]
    assert reasons[:-1] == [None] * (len(reasons) - 1) and reasons[-1] in OPENAI_FINISH_REASONS


# --- errors ---------------------------------------------------------------------------------------------------


@PROPERTIES
@given(st.integers(400, 599), st.binary(max_size=64) | st.builds(
    lambda kind, message: orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}),
    st.sampled_from(["invalid_request_error", "rate_limit_error", "overloaded_error"]) | names, text))
def test_any_upstream_error_body_becomes_an_openai_error(status: int, body: bytes) -> None:
    client_status, error = openai_error_from_anthropic(status, body)
    assert 400 <= client_status <= 599 and client_status != 529
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert set(error) == {"message", "type", "param", "code"}
    try:
        sent = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return
    if isinstance(sent, dict) and sent.get("message"):
        assert error["message"] == sent["message"] and error["code"] == sent["type"]
