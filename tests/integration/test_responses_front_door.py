"""`POST /v1/responses` with the official `openai` SDK's `responses` surface, translated to chat and back over the
one path: replies, streams, function tools, `previous_response_id` across two gateway processes on one database,
`GET /v1/responses/{id}`, and the errors."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import DEV_KEY, run_gateway

OTHER_KEY = "sk-test-other"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {flush_interval_seconds: 0.05}
"""
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _client(url: str, key: str = DEV_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_a_response_and_a_streamed_one(tmp_path: Path) -> None:
    with run_gateway(CONFIG, keys=(DEV_KEY,), data_dir=str(tmp_path)) as url:
        client = _client(url)
        reply = client.responses.create(model="mock", input="hello from responses", instructions="Be brief.")
        assert reply.object == "response" and reply.status == "completed"
        assert reply.output_text == "hello from responses"
        assert reply.id.startswith("resp_") and reply.instructions == "Be brief."
        usage = reply.usage
        assert usage is not None and usage.total_tokens == usage.input_tokens + usage.output_tokens
        with client.responses.stream(model="mock", input="one two three four") as stream:
            deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
            final = stream.get_final_response()
        assert "".join(deltas) == "one two three four" and len(deltas) > 1
        assert final.output_text == "one two three four" and final.status == "completed"
        events = [event.type for event in client.responses.create(model="mock", input="hi", stream=True)]
        assert events[0] == "response.created" and events[-1] == "response.completed"


def test_a_forced_function_tool_is_a_function_call_item(tmp_path: Path) -> None:
    with run_gateway(CONFIG, keys=(DEV_KEY,), data_dir=str(tmp_path)) as url:
        reply = _client(url).responses.create(model="mock", input="Paris", tools=[WEATHER],  # type: ignore[list-item]
                                              tool_choice="required")
        calls = [item for item in reply.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
        assert calls[0].arguments.startswith("{")


def test_a_conversation_continues_on_another_gateway_process(tmp_path: Path) -> None:
    """Two gateways on one database: the second continues what the first answered; the mock counts every word of
    every message it is sent as prompt tokens, so the history it got shows in the usage."""
    with run_gateway(CONFIG, keys=(DEV_KEY, OTHER_KEY), data_dir=str(tmp_path)) as first_url, \
            run_gateway(CONFIG, keys=(DEV_KEY, OTHER_KEY), data_dir=str(tmp_path)) as second_url:
        first = _client(first_url).responses.create(model="mock", input="alpha beta")
        assert first.usage is not None and first.usage.input_tokens == 2
        second = _client(second_url).responses.create(model="mock", input="gamma", previous_response_id=first.id)
        assert second.output_text == "gamma"
        assert second.usage is not None and second.usage.input_tokens == 5  # alpha beta, alpha beta, gamma
        assert second.previous_response_id == first.id
        third = _client(first_url).responses.create(model="mock", input="delta", previous_response_id=second.id)
        assert third.usage is not None and third.usage.input_tokens == 7
        assert _client(second_url).responses.retrieve(first.id).output_text == "alpha beta"
        with pytest.raises(openai.NotFoundError):  # another key's answer is not found
            _client(second_url, OTHER_KEY).responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            _client(first_url, OTHER_KEY).responses.create(model="mock", input="x", previous_response_id=first.id)


def test_store_false_keeps_nothing_and_errors_are_clear(tmp_path: Path) -> None:
    with run_gateway(CONFIG, keys=(DEV_KEY,), data_dir=str(tmp_path)) as url:
        client = _client(url)
        unkept = client.responses.create(model="mock", input="forget me", store=False)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(unkept.id)
        with pytest.raises(openai.NotFoundError) as missing:
            client.responses.create(model="mock", input="x", previous_response_id="resp_nope")
        assert "resp_nope" in str(missing.value)
        with pytest.raises(openai.BadRequestError) as bad:
            client.responses.create(model="mock", input=[{"type": "web_search_call"}])  # type: ignore[list-item]
        assert str(bad.value.param).startswith("input.0")  # the field, as OpenAI names it
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model="no-such-model", input="x")
        with pytest.raises(openai.AuthenticationError):
            _client(url, "sk-wrong").responses.create(model="mock", input="x")
