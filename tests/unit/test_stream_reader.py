"""The stream reader: tool calls as OpenAI streams them (and as some compatible servers do), and the usage its fast
paths find in raw bytes, which must be what the whole reading finds."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.mock import chat_chunks, completion_chunks
from sluice.stream_reader import assemble_stream, reply_usage, sse_events, stream_usage
from tests.fakes.openai import embedding_vector, tool_call_deltas, usage


def _wire(chunks: list[dict[str, object]], end: bytes = b"\n\n") -> bytes:
    return b"".join(b"data: " + orjson.dumps(chunk) + end for chunk in chunks) + b"data: [DONE]" + end


def _delta_chunk(calls: list[dict[str, object]]) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": calls}}]}


def test_a_name_is_set_once_and_arguments_join_by_index() -> None:
    first = tool_call_deltas(0, "call_a", "get_weather", '{"city": "Paris"}', parts=3)
    second = tool_call_deltas(1, "call_b", "get_time", "{}", parts=1)
    repeated = [{**delta, "function": {**delta["function"], "name": "get_weather"}} for delta in first[1:]]
    for deltas in ([first[0], second[0], *first[1:], *second[1:]], [first[0], second[0], *repeated, *second[1:]]):
        body, text, _ = assemble_stream(sse_events([_wire([_delta_chunk([delta]) for delta in deltas])]))
        assert body is not None
        calls = body["choices"][0]["message"]["tool_calls"]
        assert [(call["id"], call["function"]["name"], call["function"]["arguments"]) for call in calls] == [
            ("call_a", "get_weather", '{"city": "Paris"}'), ("call_b", "get_time", "{}")]
        assert body["choices"][0]["message"]["content"] is None and text == '{"city": "Paris"}{}'


def test_calls_without_an_index_open_with_their_id() -> None:
    deltas = [{"id": "a", "function": {"name": "f", "arguments": '{"x":'}}, {"function": {"arguments": "1}"}},
              {"id": "b", "function": {"name": "g", "arguments": "{}"}}]
    body, _, _ = assemble_stream(sse_events([_wire([_delta_chunk([delta]) for delta in deltas])]))
    assert body is not None
    assert [(call["id"], call["function"]["name"], call["function"]["arguments"])
            for call in body["choices"][0]["message"]["tool_calls"]] == [("a", "f", '{"x":1}'), ("b", "g", "{}")]


STREAMS = [
    chat_chunks({"model": "m", "messages": [{"role": "user", "content": "one two three " * 30}]}, 40, True),
    chat_chunks({"model": "m", "messages": [{"role": "user", "content": "one two"}]}, 2, False),
    completion_chunks({"model": "m", "prompt": "say this " * 50}, 30, include_usage=True),
    [*chat_chunks({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, 2, False)[:-1],
     {"id": "x", "object": "chat.completion.chunk", "choices": [], "usage": usage(7, 3)}],
]


@pytest.mark.parametrize("chunks", STREAMS)
@pytest.mark.parametrize("piece", [1, 7, 100_000])
@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n"])
def test_the_usage_fast_path_finds_what_the_whole_reading_finds(chunks: list[dict[str, object]], piece: int,
                                                               end: bytes) -> None:
    wire = _wire(chunks, end)
    split = [wire[start:start + piece] for start in range(0, len(wire), piece)]
    body, _, found = assemble_stream(sse_events(split))
    assert body is not None and stream_usage(split) == found
    assert found == next((chunk["usage"] for chunk in reversed(chunks) if "usage" in chunk), None)


def test_the_usage_of_replies() -> None:
    counts = usage(12, 40)
    chat = {"usage": counts, "id": "x", "choices": [{"message": {"content": '"usage": {"prompt_tokens": 1}'}}]}
    assert reply_usage(orjson.dumps(chat)) == counts  # usage first, and its name inside a string
    large = {"data": [{"embedding": embedding_vector(str(index), 1536)} for index in range(3)],
             "usage": {"prompt_tokens": 8, "total_tokens": 8, "note": "a } in a string"}}
    assert reply_usage(orjson.dumps(large)) == large["usage"]
    assert reply_usage(b'{"choices": []}') is None and reply_usage(b"not json") is None
