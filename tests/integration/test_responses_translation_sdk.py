"""The official openai SDK's Responses client against bytes the Responses ⇄ chat translators produce."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from sluice.frontdoors.responses_reply import chat_to_response, conversation_turn, responses_error
from sluice.frontdoors.responses_request import ResponsesRequestError, responses_to_chat
from sluice.frontdoors.responses_stream import ChatToResponsesStream
from tests.servers import serve

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                               "additionalProperties": False}}
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
CALLS = [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], "usage": None}


USAGE_CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": USAGE}
MESSAGES: dict[str, dict[str, Any]] = {
    "text": {"role": "assistant", "content": "Hello from Sluice."},
    "tools": {"role": "assistant", "content": None, "tool_calls": CALLS},
    "reasoning": {"role": "assistant", "content": "42", "reasoning_content": "Six sevens."},
}
FINISH = {"text": "stop", "tools": "tool_calls", "reasoning": "stop"}
CHUNKS: dict[str, list[dict[str, Any]]] = {
    "text": [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello "}),
             chunk({"content": "from Sluice."}), chunk({}, "stop"), USAGE_CHUNK],
    "tools": [chunk({"role": "assistant", "content": "Checking."}),
              chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
              chunk({}, "tool_calls"), USAGE_CHUNK],
    "fail": [chunk({"content": "Half an ans"})],
    "reasoning": [chunk({"role": "assistant", "reasoning_content": "Six "}), chunk({"reasoning_content": "sevens."}),
                  chunk({"content": "42"}), chunk({}, "stop"), USAGE_CHUNK],
}


class FakeResponsesApi:
    """`POST /v1/responses` answered from fixed chat replies and chunk lists through the translators; the model
    name picks the scenario, and each turn is stored for `previous_response_id`."""

    def __init__(self) -> None:
        self.chat_requests: list[dict[str, Any]] = []
        self.turns: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = orjson.loads(await self._body(receive))
        try:
            chat_request = responses_to_chat(body, self.turns.get(body.get("previous_response_id") or ""))
        except ResponsesRequestError as exc:
            await self._json(send, 400, responses_error(400, exc.message, param=exc.param))
            return
        self.chat_requests.append(chat_request)
        response_id = f"resp_{len(self.chat_requests)}"
        if body.get("stream"):
            await self._stream(send, body, chat_request, response_id)
            return
        message = MESSAGES[body["model"]]
        reply = {"object": "chat.completion", "choices": [
            {"index": 0, "message": message, "finish_reason": FINISH[body["model"]]}], "usage": USAGE}
        self.turns[response_id] = conversation_turn(chat_request, message)
        await self._json(send, 200, chat_to_response(reply, request=body, response_id=response_id,
                                                     created_at=int(time.time())))

    async def _stream(self, send: Any, body: dict[str, Any], chat_request: dict[str, Any], response_id: str) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        stream = ChatToResponsesStream(request=body, response_id=response_id, created_at=int(time.time()))
        await send({"type": "http.response.body", "body": stream.start(), "more_body": True})
        for piece in CHUNKS[body["model"]]:
            await send({"type": "http.response.body", "body": stream.feed(piece), "more_body": True})
        end = stream.fail("The upstream went away.", "upstream_unreachable") if body["model"] == "fail" \
            else stream.finish()
        self.turns[response_id] = conversation_turn(chat_request, stream.final_message())
        await send({"type": "http.response.body", "body": end})

    @staticmethod
    async def _body(receive: Any) -> bytes:
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                return data

    @staticmethod
    async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(payload)})


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[FakeResponsesApi, openai.OpenAI]]:
    fake = FakeResponsesApi()
    with serve(fake) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=5)
        yield fake, client
        client.close()


def test_create_returns_the_text(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    fake, client = api
    response = client.responses.create(model="text", input="Hi", instructions="Be brief.", max_output_tokens=50)
    assert response.output_text == "Hello from Sluice."
    assert response.status == "completed" and response.instructions == "Be brief."
    assert response.usage is not None and response.usage.total_tokens == 15
    assert fake.chat_requests[-1]["messages"] == [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Hi"}]
    assert fake.chat_requests[-1]["max_completion_tokens"] == 50


def test_previous_response_id_continues_the_conversation(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    fake, client = api
    first = client.responses.create(model="text", input="My name is Ada.", instructions="Old instructions.")
    client.responses.create(model="text", input="And my name?", previous_response_id=first.id,
                            instructions="New instructions.")
    assert fake.chat_requests[-1]["messages"] == [
        {"role": "system", "content": "New instructions."}, {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello from Sluice."}, {"role": "user", "content": "And my name?"},
    ]


def test_create_returns_function_calls(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    fake, client = api
    response = client.responses.create(model="tools", input="Weather in Paris?", tools=[WEATHER_TOOL])
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(call.call_id, call.name, call.arguments) for call in calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}')]
    assert fake.chat_requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    # the function's result, sent back as the SDK documents it, is a tool message after the call
    client.responses.create(model="text", tools=[WEATHER_TOOL], input=[
        {"role": "user", "content": "Weather in Paris?"}, *[call.model_dump() for call in calls],
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
    ])
    assert fake.chat_requests[-1]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
    ]


def test_create_stream_yields_the_typed_events(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    _, client = api
    events = list(client.responses.create(model="text", input="Hi", stream=True))
    assert [event.type for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == "Hello from Sluice."
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.output_text == deltas
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 5


def test_stream_helper_assembles_the_final_response(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    _, client = api
    with client.responses.stream(model="tools", input="Weather?", tools=[WEATHER_TOOL]) as stream:
        snapshots = [event.snapshot for event in stream if event.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert snapshots == ['{"city":', '{"city":"Paris"}']
    assert final.output_text == "Checking."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(call.call_id, call.name, call.arguments) for call in calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}')]
    assert calls[0].parsed_arguments == {"city": "Paris"}  # the SDK parses a strict tool's arguments


def test_stream_helper_text(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    _, client = api
    with client.responses.stream(model="text", input="Hi") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "Hello from Sluice."


@pytest.mark.parametrize("streamed", [False, True])
def test_reasoning_is_a_reasoning_item(api: tuple[FakeResponsesApi, openai.OpenAI], streamed: bool) -> None:
    _, client = api
    if streamed:
        with client.responses.stream(model="reasoning", input="6 x 7?") as stream:
            reasoning_deltas = [event.delta for event in stream if event.type == "response.reasoning_text.delta"]
            response = stream.get_final_response()
        assert reasoning_deltas == ["Six ", "sevens."]
    else:
        response = client.responses.create(model="reasoning", input="6 x 7?")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert [part.text for part in reasoning.content] == ["Six sevens."]
    assert response.output_text == "42"


def test_failure_mid_stream_raises_in_the_sdk(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    _, client = api
    events: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for event in client.responses.create(model="fail", input="Hi", stream=True):
            events.append(event)
    assert (caught.value.message, caught.value.code) == ("The upstream went away.", "upstream_unreachable")
    assert [event.type for event in events][-3:] == [
        "response.content_part.added", "response.output_text.delta", "response.failed"]
    failed = events[-1]
    assert failed.response.status == "failed" and failed.response.error is not None
    assert failed.response.error.message == "The upstream went away."
    assert failed.response.output_text == "Half an ans"
    with client.responses.stream(model="fail", input="Hi") as stream, pytest.raises(openai.APIError):
        stream.get_final_response()


def test_refused_request_is_a_bad_request_naming_the_field(api: tuple[FakeResponsesApi, openai.OpenAI]) -> None:
    _, client = api
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="text", input="Hi", tools=[WEATHER_TOOL, {"type": "custom", "name": "patch"}])
    assert caught.value.param == "tools.1.type"
    assert "'custom'" in caught.value.message
