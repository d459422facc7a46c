"""Property tests of the Messages front door: requests keep their meaning through OpenAI chat and back, and a
chat stream split anywhere reassembles into the message the unstreamed reply translates to."""

from __future__ import annotations

import json
from typing import Any

from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from sluice.frontdoors.messages_reply import chat_to_message
from sluice.frontdoors.messages_request import messages_to_chat
from sluice.frontdoors.messages_stream import ChatToMessagesStream
from sluice.providers.anthropic_request import to_anthropic_request

PROPERTIES = settings(max_examples=120, deadline=None, derandomize=True, database=None)
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
MODEL = "claude-sonnet-4-5"

text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
tool_inputs = st.dictionaries(names, json_values, max_size=4)


def text_blocks(values: list[str]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value} for value in values]


@st.composite
def tool_results(draw: st.DrawFn, tool_use_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    result["content"] = draw(text | st.lists(text, min_size=1, max_size=3).map(text_blocks))
    if draw(st.booleans()):
        result["is_error"] = draw(st.booleans())
    return result


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating turns from a user: assistant turns of texts then tool uses; tool results answer them first."""
    turns: list[dict[str, Any]] = []
    pending: list[str] = []  # the tool use ids the next user turn must answer
    count = draw(st.integers(1, 5))
    for i in range(count):
        results = [draw(tool_results(tool_id)) for tool_id in pending]
        texts = draw(st.lists(text, min_size=0 if results else 1, max_size=2))
        if not results and len(texts) == 1 and draw(st.booleans()):
            turns.append({"role": "user", "content": texts[0]})
        else:
            turns.append({"role": "user", "content": results + text_blocks(texts)})
        uses: list[dict[str, Any]] = [
            {"type": "tool_use", "id": f"toolu_{i}_{k}", "name": draw(names), "input": draw(tool_inputs)}
            for k in range(draw(st.integers(0, 2)))]
        pending = [use["id"] for use in uses]
        said = draw(st.lists(text, min_size=0 if uses else 1, max_size=2))
        thinks = draw(st.booleans())
        thinking = [{"type": "thinking", "thinking": "…", "signature": "s"}] if thinks else []
        ends_on_the_user = i == count - 1 and not uses and draw(st.booleans())
        if not ends_on_the_user:
            turns.append({"role": "assistant", "content": thinking + text_blocks(said) + uses})
    if turns[-1]["role"] == "assistant" and pending:
        turns.append({"role": "user", "content": [draw(tool_results(tool_id)) for tool_id in pending]})
    return turns


tool_definitions = st.lists(
    st.fixed_dictionaries(
        {"name": names, "input_schema": st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(names, st.just({"type": "string"}),
                                                                      min_size=1, max_size=2)})},
        optional={"description": text}),
    min_size=1, max_size=3, unique_by=lambda tool: str(tool["name"]))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": draw(st.integers(1, 100_000)),
                            "messages": draw(conversations())}
    system = draw(st.none() | text | st.lists(text, min_size=1, max_size=3).map(text_blocks))
    if system is not None:
        body["system"] = system
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(text, min_size=1, max_size=3))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        body["metadata"] = {"user_id": draw(text)}
    if draw(st.booleans()):
        body["tools"] = draw(tool_definitions)
        kind = draw(st.sampled_from([None, "auto", "any", "none", "tool"]))
        if kind is not None:
            choice: dict[str, Any] = {"type": kind, "name": draw(names)} if kind == "tool" else {"type": kind}
            if kind != "none" and draw(st.booleans()):
                choice["disable_parallel_tool_use"] = True
            body["tool_choice"] = choice
    return body


def system_text(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(block["text"] for block in system)


def block_meaning(block: dict[str, Any]) -> dict[str, Any] | None:
    """A block as what it means; tool results as their text (with an error flag as the "Error: " prefix)."""
    if block["type"] == "thinking":
        return None  # dropped on purpose: OpenAI-shaped models take no reasoning input
    if block["type"] != "tool_result":
        return block
    content = block.get("content", "")
    joined = content if isinstance(content, str) else "\n\n".join(item["text"] for item in content)
    return {"type": "tool_result", "tool_use_id": block["tool_use_id"],
            "content": ("Error: " if block.get("is_error") else "") + joined}


def meaning(body: dict[str, Any]) -> dict[str, Any]:
    """What a Messages request asks for, with equivalent shapes (string content, split turns) made equal."""
    turns: list[dict[str, Any]] = []
    for message in body["messages"]:
        content = message["content"]
        blocks = text_blocks([content]) if isinstance(content, str) else content
        kept = [meant for block in blocks if (meant := block_meaning(block)) is not None]
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1]["content"].extend(kept)
        else:
            turns.append({"role": message["role"], "content": kept})
    asked = ("max_tokens", "stop_sequences", "temperature", "metadata", "tool_choice")
    out: dict[str, Any] = {key: body[key] for key in asked if key in body}
    tools = [{key: tool[key] for key in ("name", "description", "input_schema") if key in tool}
             for tool in body.get("tools", [])]
    return {**out, "system": system_text(body.get("system")), "turns": turns, "tools": tools}


@PROPERTIES
@given(requests())
def test_a_request_keeps_its_meaning_through_openai_chat_and_back(body: dict[str, Any]) -> None:
    chat = messages_to_chat(body)
    back = to_anthropic_request(chat, model=MODEL, api_version="2023-06-01", default_max_tokens=1)
    assert meaning(back) == meaning(body)


# --- streams --------------------------------------------------------------------------------------------------


@st.composite
def split(draw: st.DrawFn, value: str) -> list[str]:
    """`value` cut at arbitrary places (empty pieces included: they must change nothing)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=6)))
    bounds = [0, *cuts, len(value)]
    return [value[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


@st.composite
def replies(draw: st.DrawFn) -> dict[str, Any]:
    calls = [{"id": f"call_{k}", "type": "function",
              "function": {"name": draw(names), "arguments": json.dumps(draw(tool_inputs))}}
             for k in range(draw(st.integers(0, 3)))]
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text), "tool_calls": calls or None}
    reasoning = draw(st.none() | text)
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    usage: dict[str, Any] = {"prompt_tokens": draw(st.integers(0, 10**6)),
                             "completion_tokens": draw(st.integers(0, 10**5))}
    usage["prompt_tokens_details"] = {"cached_tokens": draw(st.integers(0, usage["prompt_tokens"]))}
    return {"id": "chatcmpl-p1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-p1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


@st.composite
def streamed(draw: st.DrawFn, reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks a server could send for `reply`, each text and argument string split anywhere."""
    choice = reply["choices"][0]
    message = choice["message"]
    chunks = [chunk({"role": "assistant", "content": ""})]
    for piece in draw(split(message.get("reasoning_content") or "")):
        chunks.append(chunk({"reasoning_content": piece}))
    for piece in draw(split(message["content"] or "")):
        chunks.append(chunk({"content": piece}))
    for index, call in enumerate(message["tool_calls"] or []):
        pieces = draw(split(call["function"]["arguments"]))
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": pieces[0]}}
        chunks.append(chunk({"tool_calls": [head]}))
        chunks.extend(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                      for piece in pieces[1:])
    chunks.append(chunk({}, choice["finish_reason"]))
    chunks.append({**chunk({}), "choices": [], "usage": reply["usage"]})
    return chunks


def stream_events(raw: bytes) -> list[Any]:
    """The SDK-validated events of an Anthropic stream, ping left out."""
    events = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        if data["type"] != "ping":
            events.append(EVENTS.validate_python(data))
    return events


def final_message(events: list[Any]) -> dict[str, Any]:
    """What a client reassembles from the events (blocks must start 0, 1, 2… and one be open at a time)."""
    assert events[0].type == "message_start" and [event.type for event in events[-2:]] == [
        "message_delta", "message_stop"]
    message: dict[str, Any] = events[0].message.model_dump(exclude_none=True)
    json_parts: dict[int, str] = {}
    open_index: int | None = None
    for event in events[1:-2]:
        if event.type == "content_block_start":
            assert open_index is None and event.index == len(message["content"])
            message["content"].append(event.content_block.model_dump(exclude_none=True))
            open_index = event.index
        elif event.type == "content_block_stop":
            assert event.index == open_index
            open_index = None
        elif event.delta.type == "text_delta":
            message["content"][event.index]["text"] += event.delta.text
        elif event.delta.type == "thinking_delta":
            message["content"][event.index]["thinking"] += event.delta.thinking
        else:
            json_parts[event.index] = json_parts.get(event.index, "") + event.delta.partial_json
    assert open_index is None
    for index, arguments in json_parts.items():
        message["content"][index]["input"] = json.loads(arguments)
    message["stop_reason"] = events[-2].delta.stop_reason
    message["usage"].update(events[-2].usage.model_dump(exclude_none=True))
    return message


@PROPERTIES
@given(replies().flatmap(lambda reply: st.tuples(st.just(reply), streamed(reply))))
def test_a_stream_split_anywhere_reassembles_into_the_unstreamed_message(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    reply, chunks = case
    stream = ChatToMessagesStream(model=MODEL, message_id="msg_p1")
    raw = b"".join(stream.feed(item) for item in chunks) + stream.finish()
    expected = chat_to_message(reply, model=MODEL)
    streamed_message = final_message(stream_events(raw))
    for key in ("id", "model", "content", "stop_reason", "usage"):
        assert streamed_message[key] == expected[key], key
