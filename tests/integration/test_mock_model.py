"""The mock provider behaves like a model for the official OpenAI SDK: structured output, tools, n, logprobs, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, Field

from tests.conftest import DEV_KEY, run_gateway

PROMPT = "what is the weather in Paris today"


class Weather(BaseModel):
    city: str
    celsius: float = Field(ge=-40, le=50)
    conditions: Literal["sunny", "rainy", "cloudy"]
    hourly: list[int] = Field(min_length=2, max_length=4)


class GetWeather(BaseModel):
    """Look up the weather in a city."""

    city: str = Field(min_length=2)
    days: int = Field(ge=1, le=7)
    unit: Literal["c", "f"]


LOOKUP: ChatCompletionToolParam = {"type": "function", "function": {
    "name": "lookup", "strict": True, "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                     "required": ["query"], "additionalProperties": False}}}


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sdk() -> Iterator[openai.OpenAI]:
    with run_gateway() as url:
        with openai.OpenAI(base_url=url + "/v1", api_key=DEV_KEY, max_retries=0) as client:
            yield client


def test_parse_with_a_pydantic_model_returns_an_instance(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.parse(model="mock", messages=user(PROMPT), response_format=Weather)
    again = sdk.chat.completions.parse(model="mock", messages=user(PROMPT), response_format=Weather)
    parsed = first.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert set(parsed.city.split()) <= set(PROMPT.split()) and 2 <= len(parsed.hourly) <= 4
    assert again.choices[0].message.parsed == parsed and again.id != first.id
    assert first.choices[0].finish_reason == "stop"


def test_json_object_mode_answers_a_json_object(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=user(PROMPT), response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "") == {"reply": PROMPT}


def test_a_forced_pydantic_tool_gets_arguments_that_parse(sdk: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    named = sdk.chat.completions.parse(model="mock", messages=user(PROMPT), tools=[LOOKUP, tool],
                                       tool_choice={"type": "function", "function": {"name": "GetWeather"}})
    call = (named.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "GetWeather" and isinstance(call.function.parsed_arguments, GetWeather)
    assert named.choices[0].finish_reason == "tool_calls" and named.choices[0].message.content is None
    required = sdk.chat.completions.create(model="mock", messages=user(PROMPT), tools=[tool], tool_choice="required")
    arguments = required.choices[0].message.tool_calls[0].function.arguments  # type: ignore[index, union-attr]
    assert GetWeather.model_validate_json(arguments) == call.function.parsed_arguments


def test_auto_calls_the_tool_the_user_names_and_then_quotes_its_result(sdk: openai.OpenAI) -> None:
    tools = [LOOKUP, openai.pydantic_function_tool(GetWeather)]
    plain = sdk.chat.completions.create(model="mock", messages=user(PROMPT), tools=tools)
    assert plain.choices[0].message.content == PROMPT and not plain.choices[0].message.tool_calls
    messages = user("please use lookup to find Paris")
    called = sdk.chat.completions.create(model="mock", messages=messages, tools=tools, tool_choice="auto")
    calls = called.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["lookup"]  # type: ignore[union-attr]
    assert set(json.loads(calls[0].function.arguments)) == {"query"}  # type: ignore[union-attr]
    refused = sdk.chat.completions.create(model="mock", messages=messages, tools=tools, tool_choice="none")
    assert refused.choices[0].message.content == "please use lookup to find Paris"
    turn: list[ChatCompletionMessageParam] = [
        *messages, called.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Paris is 21 degrees"}]
    answer = sdk.chat.completions.create(model="mock", messages=turn, tools=tools)
    assert "Paris is 21 degrees" in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


def test_naming_two_tools_calls_both_unless_parallel_calls_are_off(sdk: openai.OpenAI) -> None:
    tools = [LOOKUP, openai.pydantic_function_tool(GetWeather)]
    messages = user("call GetWeather and lookup")
    both = sdk.chat.completions.create(model="mock", messages=messages, tools=tools)
    names = [call.function.name for call in both.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["lookup", "GetWeather"]
    assert len({call.id for call in both.choices[0].message.tool_calls or []}) == 2
    one = sdk.chat.completions.create(model="mock", messages=messages, tools=tools, parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls or []) == 1


def test_n_gives_distinct_deterministic_choices_and_counts_them_all(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=user("hello there world"), n=2)
    again = sdk.chat.completions.create(model="mock", messages=user("hello there world"), n=2)
    assert [choice.index for choice in reply.choices] == [0, 1]
    contents = [choice.message.content or "" for choice in reply.choices]
    assert contents[0] == "hello there world" and contents[1] != contents[0]
    assert [choice.message.content for choice in again.choices] == contents
    assert reply.usage is not None and reply.usage.completion_tokens == sum(len(c.split()) for c in contents)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_logprobs_cover_every_token_with_top_alternatives(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=user("hello there world"), logprobs=True,
                                        top_logprobs=2)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and "".join(token.token for token in content) == "hello there world"
    assert len(content) == reply.usage.completion_tokens  # type: ignore[union-attr]
    for token in content:
        assert token.logprob < 0 and bytes(token.bytes or []) == token.token.encode()
        assert len(token.top_logprobs) == 2 and token.top_logprobs[0].token == token.token
        assert token.top_logprobs[1].logprob < token.top_logprobs[0].logprob
    plain = sdk.chat.completions.create(model="mock", messages=user("hello there world"))
    assert plain.choices[0].logprobs is None


def test_stop_cuts_before_the_first_stop_sequence(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=user("one two. three four"), stop=["four", "."])
    assert reply.choices[0].message.content == "one two" and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_max_tokens_cuts_to_that_many_tokens_with_finish_reason_length(sdk: openai.OpenAI) -> None:
    messages = user("one two three four five")
    reply = sdk.chat.completions.create(model="mock", messages=messages, max_tokens=2)
    assert reply.choices[0].message.content == "one two" and reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 2
    newer = sdk.chat.completions.create(model="mock", messages=messages, max_completion_tokens=3)
    assert newer.choices[0].message.content == "one two three" and newer.choices[0].finish_reason == "length"
    roomy = sdk.chat.completions.create(model="mock", messages=messages, max_tokens=5)
    assert roomy.choices[0].finish_reason == "stop"
    with pytest.raises(openai.LengthFinishReasonError):  # cut JSON, as a real model's
        sdk.chat.completions.parse(model="mock", messages=user(PROMPT), response_format=Weather, max_tokens=1)


def test_the_stream_helper_reassembles_n_choices_with_logprobs(sdk: openai.OpenAI) -> None:
    arguments: dict[str, Any] = {"model": "mock", "messages": user("hello there big world"), "n": 2,
                                 "logprobs": True, "top_logprobs": 1}
    with sdk.chat.completions.stream(**arguments, stream_options={"include_usage": True}) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    plain = sdk.chat.completions.create(**arguments)
    assert [choice.message.content for choice in final.choices] == [c.message.content for c in plain.choices]
    assert final.choices[1].message.content == "hello there big world (2)"
    assert [choice.finish_reason for choice in final.choices] == ["stop", "stop"]
    streamed_tokens = [token.token for token in final.choices[1].logprobs.content or []]  # type: ignore[union-attr]
    assert streamed_tokens == [token.token for token in plain.choices[1].logprobs.content or []]
    assert {event.type for event in events} >= {"content.delta", "content.done", "logprobs.content.delta"}
    assert final.usage == plain.usage


def test_the_stream_helper_reassembles_tool_calls(sdk: openai.OpenAI) -> None:
    tools = [LOOKUP, openai.pydantic_function_tool(GetWeather)]
    arguments: dict[str, Any] = {"model": "mock", "messages": user("ask GetWeather about Paris"), "tools": tools}
    with sdk.chat.completions.stream(**arguments, stream_options={"include_usage": True}) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    plain = sdk.chat.completions.create(**arguments)
    call = (final.choices[0].message.tool_calls or [])[0]
    assert [event.name for event in done] == ["GetWeather"] and isinstance(done[0].parsed_arguments, GetWeather)
    assert isinstance(call.function.parsed_arguments, GetWeather) and final.choices[0].finish_reason == "tool_calls"
    assert call.function.arguments == plain.choices[0].message.tool_calls[0].function.arguments
    assert final.usage == plain.usage and final.usage is not None and final.usage.completion_tokens > 0


def test_the_stream_helper_parses_structured_output(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(model="mock", messages=user(PROMPT), response_format=Weather) as stream:
        final = stream.get_final_completion()
    parsed = sdk.chat.completions.parse(model="mock", messages=user(PROMPT), response_format=Weather)
    assert isinstance(final.choices[0].message.parsed, Weather)
    assert final.choices[0].message.parsed == parsed.choices[0].message.parsed


def test_raw_stream_chunks_carry_each_choice_index_and_its_own_tool_calls(sdk: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    chunks = list(sdk.chat.completions.create(model="mock", messages=user(PROMPT), tools=[tool], n=2, stream=True,
                                              tool_choice="required"))
    assert len({chunk.id for chunk in chunks}) == 1 and all(len(chunk.choices) == 1 for chunk in chunks)
    heads = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or [] if call.id]
    assert [head.function.name for head in heads] == ["GetWeather", "GetWeather"]  # type: ignore[union-attr]
    assert len({head.id for head in heads}) == 2
    finishes = {chunk.choices[0].index: chunk.choices[0].finish_reason for chunk in chunks
                if chunk.choices[0].finish_reason}
    assert finishes == {0: "tool_calls", 1: "tool_calls"}
    for index in (0, 1):
        text = "".join(call.function.arguments or "" for chunk in chunks if chunk.choices[0].index == index
                       for call in chunk.choices[0].delta.tool_calls or [] if call.function)
        assert isinstance(GetWeather.model_validate_json(text), GetWeather)


def test_each_call_gets_a_new_id_and_a_current_created(sdk: openai.OpenAI) -> None:
    started = int(time.time())
    first, second = (sdk.chat.completions.create(model="mock", messages=user(PROMPT), n=2) for _ in range(2))
    assert first.id != second.id and first.choices == second.choices
    assert started - 1 <= first.created <= int(time.time()) + 1
