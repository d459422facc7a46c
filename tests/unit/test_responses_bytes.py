"""`ResponseBytes`, the streamed `response` objects written from parts encoded once: the very bytes
`orjson.dumps(response_object(...))` writes, for any request echoed and any state of the response."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.frontdoors import responses_reply
from sluice.frontdoors.responses_reply import (
    ResponseBytes,
    chat_to_response,
    chat_to_response_bytes,
    response_error_object,
    response_object,
    responses_usage,
)

short = st.text(max_size=6)
requests = st.fixed_dictionaries({}, optional={
    "model": st.one_of(st.none(), short), "instructions": short, "max_output_tokens": st.integers(1, 10**6),
    "previous_response_id": short, "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "user": short,
    "service_tier": st.sampled_from(["auto", "default"]), "parallel_tool_calls": st.booleans(),
    "tool_choice": st.one_of(st.just("required"), st.just({"type": "function", "name": "f"})),
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": short}), max_size=2),
    "text": st.just({"format": {"type": "json_object"}}), "reasoning": st.one_of(st.none(), st.just({"effort": "low"})),
    "metadata": st.dictionaries(short, short, max_size=2), "store": st.booleans()})
outputs = st.lists(st.fixed_dictionaries({"type": st.just("message"), "id": short, "content": st.just([])}),
                   max_size=2)
usages = st.one_of(st.none(), st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99),
                                                     "completion_tokens": st.integers(0, 99)}))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(requests, st.sampled_from(["in_progress", "completed", "incomplete", "failed"]), outputs, usages,
       st.sampled_from([None, "stop", "length", "content_filter"]), st.booleans(),
       st.one_of(st.none(), st.integers(0, 2**40)))
def test_the_bytes_are_those_of_the_response_object(
    request: dict[str, Any], status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None,
    finish_reason: str | None, failed: bool, completed_at: int | None,
) -> None:
    error = response_error_object("It broke.", "server_error") if failed else None
    fields: dict[str, Any] = {"usage": responses_usage(usage), "finish_reason": finish_reason, "error": error,
                              "completed_at": completed_at}
    expected = response_object(request, response_id="resp_1", created_at=7, status=status, output=output, **fields)
    written = ResponseBytes(request, response_id="resp_1", created_at=7).encode(status, orjson.dumps(output), **fields)
    assert written == orjson.dumps(expected)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(requests)
def test_the_opening_object_is_the_in_progress_one(request: dict[str, Any]) -> None:
    """`opening`, a stream's first object from constants, is `encode`'s in-progress object with no output."""
    response = ResponseBytes(request, response_id="resp_1", created_at=7)
    assert response.opening() == response.encode("in_progress", b"[]")
    assert response.opening() == orjson.dumps(response_object(request, response_id="resp_1", created_at=7,
                                                              status="in_progress", output=[]))


plain_requests = st.fixed_dictionaries({"model": st.one_of(st.none(), short), "input": short}, optional={
    "store": st.one_of(st.booleans(), st.none(), st.just(0)), "stream": st.booleans(), "instructions": st.none(),
    "tools": st.just([]), "metadata": st.just({}), "tool_choice": st.none(), "user": short})


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(plain_requests, st.sampled_from(["in_progress", "completed", "incomplete", "failed"]), outputs, usages)
def test_a_request_that_sets_few_fields_gets_the_same_bytes(request: dict[str, Any], status: str,
                                                            output: list[dict[str, Any]],
                                                            usage: dict[str, Any] | None) -> None:
    """Such a request's echo is written from constants: still the bytes of `response_object`."""
    encoded = ResponseBytes(request, response_id="resp_1", created_at=1700000000).encode(
        status, orjson.dumps(output), usage=responses_usage(usage), completed_at=1700000001)
    assert encoded == orjson.dumps(response_object(request, response_id="resp_1", created_at=1700000000,
                                                   status=status, output=output, usage=responses_usage(usage),
                                                   completed_at=1700000001))


messages = st.fixed_dictionaries({"role": st.just("assistant")}, optional={
    "content": st.one_of(st.none(), short), "refusal": st.one_of(st.none(), short), "reasoning_content": short,
    "tool_calls": st.lists(st.fixed_dictionaries({"id": short, "function": st.fixed_dictionaries(
        {"name": short, "arguments": short})}), max_size=2)})


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(requests, messages, st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"]), usages)
def test_a_complete_answer_s_bytes_are_those_of_its_object(request: dict[str, Any], message: dict[str, Any],
                                                           finish_reason: str | None,
                                                           usage: dict[str, Any] | None) -> None:
    """A complete answer that is not kept is written without its object: the same bytes."""
    reply = {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}], "usage": usage}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(responses_reply, "new_item_id", lambda prefix: f"{prefix}_1")
        expected = chat_to_response(reply, request=request, response_id="resp_1", created_at=7, completed_at=8)
        written = chat_to_response_bytes(reply, request=request, response_id="resp_1", created_at=7, completed_at=8)
    assert written == orjson.dumps(expected)
