"""The one request path, seen from outside: every route's responses carry a request id and the gateway's overhead,
every route that takes a body refuses one past `limits.max_body_bytes`, and a project request is traced like an
outside call (a server span naming the project, its upstream calls as child LLM spans)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DEV_KEY, run_gateway
from tests.phoenix import Phoenix
from tests.telemetry_support import caller_traceparent

ADMIN = "sk-admin-request-path"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: demo, module: sluice.projects.demo}
discover_projects: false
limits: {max_body_bytes: 4096}
request_log: {enabled: false}
"""
SUMMARY = {"text": "Sluice routes requests. It is a gateway.", "summary_model": "mock", "title_model": "mock"}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with run_gateway(CONFIG, admin_key=ADMIN) as base:
        yield base


def auth(key: str = DEV_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
CASES = [
    ("GET", "/health", {}, None, 200),
    ("GET", "/v1/models", auth(), None, 200),
    ("GET", "/v1/models/mock", auth(), None, 200),
    ("GET", "/v1/models/nope", auth(), None, 404),
    ("GET", "/v1/models", {}, None, 401),
    ("POST", "/v1/chat/completions", auth(), CHAT, 200),
    ("POST", "/v1/chat/completions", {}, CHAT, 401),
    ("POST", "/v1/chat/completions", auth(), {**CHAT, "model": "nope"}, 404),
    ("GET", "/v1/chat/completions", auth(), None, 405),
    ("POST", "/projects/demo/summary", auth(), SUMMARY, 200),
    ("POST", "/projects/demo/summary", {}, SUMMARY, 401),
    ("POST", "/projects/demo/summary", auth(), {"nothing": 1}, 400),
    ("GET", "/admin/keys", auth(ADMIN), None, 200),
    ("GET", "/admin/keys", auth(), None, 403),
    ("GET", "/provider/nope/v1/files", auth(), None, 404),
    ("GET", "/no/such/route", {}, None, 404),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), CASES,
                         ids=[f"{m} {p} {s}" for m, p, _, _, s in CASES])
def test_every_response_carries_request_id_and_overhead(url: str, method: str, path: str, headers: dict[str, str],
                                                        body: object, status: int) -> None:
    reply = httpx.request(method, url + path, headers=headers, json=body, timeout=10)
    assert reply.status_code == status, reply.text
    assert len(reply.headers["x-request-id"]) == 32
    assert float(reply.headers["x-sluice-overhead-ms"]) >= 0
    mine = httpx.request(method, url + path, headers={**headers, "X-Request-ID": "req-abc.1"}, json=body, timeout=10)
    assert mine.headers["x-request-id"] == "req-abc.1"
    if status >= 400:
        assert set(reply.json()["error"]) >= {"message", "type", "code"}


@pytest.mark.parametrize("path", ["/projects/demo/summary", "/admin/keys", "/admin/prompts"])
def test_a_body_past_the_limit_is_refused_on_every_route(url: str, path: str) -> None:
    big = {"text": "x" * 6000, "name": "n"}
    key = ADMIN if path.startswith("/admin") else DEV_KEY
    declared = httpx.post(url + path, json=big, headers=auth(key), timeout=10)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["type"] == "invalid_request_error"
    assert "x-request-id" in declared.headers

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body is read
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 1000):
            yield payload[start:start + 1000]

    streamed = httpx.post(url + path, content=chunks(), timeout=10,
                          headers={**auth(key), "Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert "4096 bytes" in streamed.json()["error"]["message"]


def test_a_body_within_the_limit_still_reaches_a_project(url: str) -> None:
    reply = httpx.post(url + "/projects/demo/summary", json={**SUMMARY, "text": "y" * 3000}, headers=auth(),
                       timeout=10)
    assert reply.status_code == 200, reply.text


def test_a_project_request_is_one_trace_with_its_calls_as_child_llm_spans(phoenix: Phoenix) -> None:
    trace_id, caller_span, traceparent = caller_traceparent()
    project = f"projects-{trace_id[:8]}"
    config = CONFIG.replace("request_log: {enabled: false}",
                            f"request_log: {{enabled: false}}\ntelemetry: {{project: {project}}}")
    with run_gateway(config, phoenix_collector_endpoint=phoenix.url) as base:
        reply = httpx.post(base + "/projects/demo/summary", json=SUMMARY, timeout=10,
                           headers={**auth(), "traceparent": traceparent})
        assert reply.status_code == 200, reply.text
    spans = phoenix.wait_for_spans(project, 3, trace_id=trace_id)
    servers = [span for span in spans if span["span_kind"] == "CHAIN"]
    llms = [span for span in spans if span["span_kind"] == "LLM"]
    assert len(servers) == 1 and len(llms) == 2, [(s["name"], s["span_kind"]) for s in spans]
    server = servers[0]
    assert server["name"] == "POST /projects/demo/summary" and server["parent_id"] == caller_span
    assert server["attributes"]["sluice.project"] == "demo"
    assert server["attributes"]["metadata.project"] == "demo"  # Phoenix unpacks the `metadata` JSON
    assert server["attributes"]["http.response.status_code"] == 200
    for llm in llms:
        assert llm["parent_id"] == server["context"]["span_id"]
        assert llm["attributes"]["sluice.project"] == "demo"
        assert llm["attributes"]["llm.model_name"] == "mock-1"
        assert llm["attributes"]["sluice.request_id"] == reply.headers["x-request-id"]
