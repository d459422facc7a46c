"""The OpenAI-compatible surface end to end against the built-in mock provider, over real HTTP."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import orjson
import pytest

from tests.conftest import DEV_KEY, GatewayFactory

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello there world"}]


def sse_payloads(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data: ")]


def test_health_needs_no_key(gateway_url: str) -> None:
    reply = httpx.get(gateway_url + "/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "version": "0.1.0", "build": "test"}


def test_chat_echoes_and_reports_usage(client: httpx.Client) -> None:
    reply = client.post(CHAT, json={"model": "mock", "messages": HELLO})
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "mock-1"
    assert body["choices"][0]["message"]["content"] == "hello there world"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert float(reply.headers["x-sluice-overhead-ms"]) >= 0
    assert len(reply.headers["x-request-id"]) == 32


def test_request_id_is_echoed(client: httpx.Client) -> None:
    reply = client.post(CHAT, json={"model": "mock", "messages": HELLO}, headers={"X-Request-ID": "req-42"})
    assert reply.headers["x-request-id"] == "req-42"


def test_alias_resolves_to_the_same_model(client: httpx.Client) -> None:
    reply = client.post(CHAT, json={"model": "mock-alias", "messages": HELLO})
    assert reply.status_code == 200 and reply.json()["model"] == "mock-1"


def test_stream_is_openai_sse_with_usage_last(client: httpx.Client) -> None:
    body = {"model": "mock", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    reply = client.post(CHAT, json=body)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-accel-buffering"] == "no"
    payloads = sse_payloads(reply.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "hello there world"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6
    assert all(c["usage"] is None for c in chunks[:-1])


def test_forced_tool_call_streams_openai_deltas(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = {"model": "mock", "messages": HELLO, "tools": tools, "tool_choice": "required", "stream": True}
    chunks = [orjson.loads(p) for p in sse_payloads(client.post(CHAT, json=body).text)[:-1]]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["id"].startswith("call_")
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"input": "hello there world"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_completions_and_embeddings(client: httpx.Client) -> None:
    completion = client.post("/v1/completions", json={"model": "mock", "prompt": "say this"}).json()
    assert completion["object"] == "text_completion" and completion["choices"][0]["text"] == "say this"
    floats = client.post("/v1/embeddings", json={"model": "mock", "input": ["a", "b"], "dimensions": 8}).json()
    assert [item["index"] for item in floats["data"]] == [0, 1] and len(floats["data"][0]["embedding"]) == 8
    encoded = client.post("/v1/embeddings", json={"model": "mock", "input": "a", "dimensions": 8,
                                                  "encoding_format": "base64"}).json()
    vector = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert vector == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param", "fragment"),
    [
        (b"{not json", 400, None, "could not parse the JSON body"),
        (b"[1, 2]", 400, None, "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model", "'model'"),
        (b'{"model": "mock", "messages": []}', 400, "messages", "'messages'"),
        (b'{"model": "mock", "messages": [{"role": "robot", "content": "x"}]}', 400, "messages[0].role", "role"),
        (b'{"model": "mock", "messages": [{"role": "user"}], "temperature": 9}', 400, "temperature", "temperature"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model", "does not exist"),
    ],
)
def test_bad_requests_get_openai_errors(client: httpx.Client, body: bytes, status: int, param: str | None,
                                        fragment: str) -> None:
    reply = client.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and fragment in error["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                                     {"Authorization": "Basic " + DEV_KEY}])
def test_missing_or_wrong_key_is_401(gateway_url: str, headers: dict[str, str]) -> None:
    for method, path in (("POST", CHAT), ("GET", "/v1/models")):
        reply = httpx.request(method, gateway_url + path, headers=headers, json={"model": "mock", "messages": HELLO})
        assert reply.status_code == 401, path
        assert reply.json()["error"]["code"] == "invalid_api_key"


def test_x_api_key_header_is_accepted(gateway_url: str) -> None:
    reply = httpx.post(gateway_url + CHAT, headers={"X-API-Key": DEV_KEY}, json={"model": "mock", "messages": HELLO})
    assert reply.status_code == 200


def test_oversized_body_is_413(gateway_factory: GatewayFactory) -> None:
    config = "providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: m}\n" \
             "limits: {max_body_bytes: 2048}\n"
    with gateway_factory(config) as url:
        big = {"model": "mock", "messages": [{"role": "user", "content": "x" * 4096}]}
        reply = httpx.post(url + CHAT, json=big, headers={"Authorization": f"Bearer {DEV_KEY}"})
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"

        def chunked() -> object:
            yield orjson.dumps(big)

        streamed = httpx.post(url + CHAT, content=chunked(), headers={"Authorization": f"Bearer {DEV_KEY}"})  # type: ignore[arg-type]
        assert streamed.status_code == 413


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get(CHAT)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_models_lists_and_shows(client: httpx.Client) -> None:
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == ["mock"]
    assert client.get("/v1/models/mock").json()["owned_by"] == "mock"
    assert client.get("/v1/models/nope").status_code == 404


def test_openapi_documents_hot_routes_and_key_schemes(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health"} <= set(
        document["paths"])
    schema = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "AdminBearer"}


def test_official_sdk_streams_from_mock(gateway_url: str) -> None:
    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key=DEV_KEY, max_retries=0)
    stream = sdk.chat.completions.create(model="mock", messages=HELLO, stream=True)  # type: ignore[arg-type]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "hello there world"
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="missing", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway_url + "/v1", api_key="bad", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="mock", messages=[])


def test_metrics_show_overhead_and_need_a_key_by_default(client: httpx.Client, gateway_url: str) -> None:
    client.post(CHAT, json={"model": "mock", "messages": HELLO})
    refused = httpx.get(gateway_url + "/metrics")
    assert refused.status_code == 401 and "metrics.require_key" in refused.json()["error"]["message"]
    text = client.get("/metrics").text
    assert 'sluice_overhead_seconds_count{operation="chat"} 1.0' in text
    assert "sluice_in_flight_requests 0.0" in text


def test_metrics_can_be_open(gateway_factory: GatewayFactory) -> None:
    config = "providers:\n  mock: {type: mock}\nmetrics: {require_key: false}\n"
    with gateway_factory(config) as url:
        assert httpx.get(url + "/metrics").status_code == 200
