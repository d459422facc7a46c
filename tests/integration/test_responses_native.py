"""`POST /v1/responses` to an OpenAI deployment goes to its own Responses API (`native_responses`): the caller's
body (hosted tools and all) with the deployment's model, the reply and the event stream relayed byte for byte,
`previous_response_id` answered from Sluice's own store, and the request log in chat's shape. The upstream is a
loopback server speaking the Responses API's wire format; the client is the official `openai` SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import serve

ADMIN = "sk-admin-native-responses"
CONFIG = """
providers:
  oai: {{type: openai, base_url: "{url}/v1", api_key: oai-secret, native_responses: true, retries: {{attempts: 0}}}}
  mock: {{type: mock}}
models:
  - {{name: gpt, provider: oai, model: gpt-upstream}}
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{flush_interval_seconds: 0.05}}
"""


def response_object(response_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A `response` object as OpenAI writes it (its key order: usage after output)."""
    message = {"id": "msg_" + response_id, "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    return {"id": response_id, "object": "response", "created_at": 1_790_000_000, "status": status,
            "model": "gpt-upstream-2026", "output": [message] if status == "completed" else [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 5,
                      "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 16}
            if status == "completed" else None}


def events(response_id: str, text: str, *, cut: bool = False) -> bytes:
    """The Responses event stream of a text answer (without its ending event when `cut`)."""
    done = response_object(response_id, text)
    item = done["output"][0]
    sequence = [
        ("response.created", {"response": response_object(response_id, "", "in_progress")}),
        ("response.in_progress", {"response": response_object(response_id, "", "in_progress")}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {"item_id": item["id"], "output_index": 0, "content_index": 0,
                                         "part": {"type": "output_text", "text": "", "annotations": []}}),
        *[("response.output_text.delta", {"item_id": item["id"], "output_index": 0, "content_index": 0,
                                          "delta": piece, "logprobs": []}) for piece in (text[:3], text[3:])],
        ("response.output_text.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "text": text,
                                       "logprobs": []}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": done}),
    ]
    if cut:
        sequence = sequence[:-1]
    return b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(
        {"type": name, "sequence_number": number, **fields}) + b"\n\n"
        for number, (name, fields) in enumerate(sequence))


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    async def responses(request: Request) -> Response:
        body = orjson.loads(await request.body())
        app.state.requests.append((body, dict(request.headers)))
        reply: bytes = app.state.script.pop(0)
        if body.get("stream"):
            return Response(reply, media_type="text/event-stream")
        return Response(reply, media_type="application/json")

    app = Starlette(routes=[Route("/v1/responses", responses, methods=["POST"])])
    app.state.requests, app.state.script = [], []
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture
def gateway(upstream: Starlette, tmp_path: Path) -> Iterator[str]:
    with run_gateway(CONFIG.format(url=upstream.state.url), data_dir=str(tmp_path), admin_key=ADMIN) as url:
        yield url


def log_entries(gateway: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20  # the writer is a process of its own: slow to start on a loaded machine
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        while True:
            data: list[dict[str, Any]] = admin.get("/admin/logs", params={"include_bodies": "true"}).json()["data"]
            if len(data) >= count or time.monotonic() > deadline:
                return data
            time.sleep(0.05)


def test_a_complete_answer_is_relayed_and_a_conversation_continues(upstream: Starlette, gateway: str) -> None:
    first = orjson.dumps(response_object("resp_upstream_1", "Hello!"))
    upstream.state.script.append(first)
    request = {"model": "gpt", "input": "Hi", "tools": [{"type": "web_search"}],
               "include": ["reasoning.encrypted_content"]}
    reply = httpx.post(gateway + "/v1/responses", json=request, headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert reply.status_code == 200 and reply.content == first  # the upstream's bytes
    sent, headers = upstream.state.requests[-1]
    # The caller's body, hosted tool and all, with the deployment's model; Sluice keeps the conversation.
    assert sent == {**request, "model": "gpt-upstream", "store": False}
    assert headers["authorization"] == "Bearer oai-secret" and DEV_KEY not in str(headers)

    upstream.state.script.append(orjson.dumps(response_object("resp_upstream_2", "Again!")))
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=DEV_KEY, max_retries=0)
    second = client.responses.create(model="gpt", input="And again", previous_response_id="resp_upstream_1")
    assert second.output_text == "Again!" and second.id == "resp_upstream_2"
    sent, _ = upstream.state.requests[-1]
    assert "previous_response_id" not in sent
    assert sent["input"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                             {"role": "user", "content": "And again"}]
    assert client.responses.retrieve("resp_upstream_2").output_text == "Again!"

    entries = log_entries(gateway, 2)
    assert {entry["provider"]["name"] for entry in entries} == {"oai"}
    assert entries[0]["usage"]["prompt_tokens"] == 11 and entries[0]["usage"]["completion_tokens"] == 5


def test_a_stream_is_relayed_byte_for_byte_and_kept(upstream: Starlette, gateway: str) -> None:
    streamed = events("resp_upstream_s", "Streamed natively")
    upstream.state.script.append(streamed)
    with httpx.stream("POST", gateway + "/v1/responses", json={"model": "gpt", "input": "Hi", "stream": True},
                      headers={"Authorization": f"Bearer {DEV_KEY}"}) as reply:
        assert reply.status_code == 200
        assert reply.read() == streamed
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=DEV_KEY, max_retries=0)
    assert client.responses.retrieve("resp_upstream_s").output_text == "Streamed natively"
    [entry] = log_entries(gateway, 1)
    assert entry["stream"] is True and entry["usage"]["total_tokens"] == 16

    upstream.state.script.append(events("resp_upstream_cut", "Never finished", cut=True))
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="gpt", input="Hi") as stream:
            stream.get_final_response()


def test_other_deployments_are_still_translated(upstream: Starlette, gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=DEV_KEY, max_retries=0)
    reply = client.responses.create(model="mock", input="Hello there")
    assert reply.output_text == "Hello there" and reply.id.startswith("resp_")
    assert upstream.state.requests == []
