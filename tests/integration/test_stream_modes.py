"""Streaming modes on the OpenAI surface (`?stream_mode=` / `X-Stream-Mode`) and the `/demo/stream` page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Stream, chat_chunk, create_fake_openai
from tests.servers import serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
HELLO = [{"role": "user", "content": "hello stream modes"}]
CONFIG = """
providers:
  mock: {{type: mock, chunks: 4}}
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: gpt-test, provider: up, model: gpt-test}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture(scope="module")
def sluice_url(upstream: Starlette) -> Iterator[str]:
    with run_gateway(CONFIG.format(url=upstream.state.url)) as url:
        yield url


@pytest.fixture
def client(sluice_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sluice_url, headers=AUTH, timeout=10) as http_client:
        yield http_client


def chat(client: httpx.Client, query: str = "", headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions" + query, json={"model": "mock", "messages": HELLO, **body},
                       headers=headers or {})


def complete_text(client: httpx.Client) -> str:
    text: str = chat(client).json()["choices"][0]["message"]["content"]
    return text


def ndjson(reply: httpx.Response) -> list[dict[str, Any]]:
    assert reply.text.endswith("\n")
    return [json.loads(line) for line in reply.text.splitlines()]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


@pytest.mark.parametrize("stream", [False, True])
def test_ndjson_by_query_is_one_chunk_object_per_line(client: httpx.Client, stream: bool) -> None:
    reply = chat(client, "?stream_mode=ndjson", stream=stream)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    chunks = ndjson(reply)
    assert len(chunks) >= 4 and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "[DONE]" not in reply.text and "data:" not in reply.text
    assert text_of(chunks) == complete_text(client)


def test_ndjson_by_header_and_usage_chunk(client: httpx.Client) -> None:
    reply = chat(client, headers={"X-Stream-Mode": "NDJSON"}, stream=True, stream_options={"include_usage": True})
    assert reply.headers["content-type"] == "application/x-ndjson"
    chunks = ndjson(reply)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_query_wins_over_header(client: httpx.Client) -> None:
    reply = chat(client, "?stream_mode=sse", headers={"X-Stream-Mode": "ndjson"})
    assert reply.headers["content-type"].startswith("text/event-stream")


def test_sse_mode_streams_even_without_stream_true(client: httpx.Client) -> None:
    reply = chat(client, "?stream_mode=sse")
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [line for line in reply.text.split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert text_of(chunks) == complete_text(client)


def test_json_mode_returns_one_complete_body_even_for_stream_true(client: httpx.Client) -> None:
    reply = chat(client, "?stream_mode=json", stream=True, stream_options={"include_usage": True})
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == complete_text(client)


def test_no_mode_keeps_the_body_s_choice(client: httpx.Client) -> None:
    assert chat(client).headers["content-type"] == "application/json"
    assert chat(client, "?other=1", stream=True).headers["content-type"].startswith("text/event-stream")


def test_completions_in_ndjson(client: httpx.Client) -> None:
    reply = client.post("/v1/completions?stream_mode=ndjson", json={"model": "mock", "prompt": "say hi"})
    lines = ndjson(reply)
    assert lines and all(line["object"] == "text_completion" for line in lines)


@pytest.mark.parametrize(("query", "body", "code"), [
    ("?stream_mode=xml", {"model": "mock", "messages": HELLO}, "invalid_stream_mode"),
    ("?stream_mode=ndjson", {"model": "mock", "input": "x"}, "invalid_stream_mode"),
])
def test_bad_modes_are_400(client: httpx.Client, query: str, body: dict[str, Any], code: str) -> None:
    path = "/v1/embeddings" if "input" in body else "/v1/chat/completions"
    reply = client.post(path + query, json=body)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == code


def test_embeddings_in_json_mode(client: httpx.Client) -> None:
    reply = client.post("/v1/embeddings?stream_mode=json", json={"model": "mock", "input": "x"})
    assert reply.status_code == 200 and reply.json()["data"]


def test_ndjson_lines_flush_as_upstream_chunks_arrive(upstream: Starlette, client: httpx.Client) -> None:
    upstream.state.script.append(Stream([chat_chunk(role="assistant", content="")]
                                        + [chat_chunk(content=str(i)) for i in range(4)], delay=0.2))
    arrivals: list[float] = []
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions?stream_mode=ndjson",
                       json={"model": "gpt-test", "messages": HELLO}) as reply:
        for line in reply.iter_lines():
            if line:
                json.loads(line)
                arrivals.append(time.monotonic() - started)
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) == 5 and all(gap > 0.12 for gap in gaps), gaps


def test_ndjson_error_mid_stream_is_a_final_error_line(upstream: Starlette, client: httpx.Client) -> None:
    upstream.state.script.append(Stream([chat_chunk(role="assistant", content=""), chat_chunk(content="par")],
                                        then_reset=True))
    reply = client.post("/v1/chat/completions?stream_mode=ndjson", json={"model": "gpt-test", "messages": HELLO})
    lines = ndjson(reply)
    assert [line["choices"][0]["delta"].get("content") for line in lines[:-1]] == ["", "par"]
    assert set(lines[-1]) == {"error"} and lines[-1]["error"]["type"] == "upstream_error"


# --- the browser demo -----------------------------------------------------------------------------------------


def test_demo_page_uses_event_source(sluice_url: str) -> None:
    reply = httpx.get(sluice_url + "/demo/stream")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "new EventSource(" in reply.text and "/demo/stream/events" in reply.text


def test_demo_events_stream_the_mock_answer_without_a_key(sluice_url: str) -> None:
    with httpx.stream("GET", sluice_url + "/demo/stream/events", params={"prompt": "demo words"}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        data = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert "demo words" in text_of([json.loads(item) for item in data[:-1]])


def test_demo_limits_prompt_length(sluice_url: str) -> None:
    reply = httpx.get(sluice_url + "/demo/stream/events", params={"prompt": "x" * 501})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("config", [
    "providers:\n  mock: {type: mock}\ndemo: {enabled: false}\n",
    'providers:\n  up: {type: openai, base_url: "http://127.0.0.1:9"}\n',
])
def test_demo_is_off_without_mock_or_when_disabled(config: str) -> None:
    with run_gateway(config) as url:
        for path in ("/demo/stream", "/demo/stream/events"):
            reply = httpx.get(url + path)
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "demo_disabled"


def test_openapi_documents_stream_modes_and_demo(sluice_url: str) -> None:
    document = httpx.get(sluice_url + "/openapi.json").json()
    chat_op = document["paths"]["/v1/chat/completions"]["post"]
    assert {param["name"] for param in chat_op["parameters"]} == {"stream_mode", "X-Stream-Mode"}
    assert "application/x-ndjson" in chat_op["responses"]["200"]["content"]
    assert "/demo/stream/events" in document["paths"]
