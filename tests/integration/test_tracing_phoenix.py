"""Spans in a real Phoenix, read back over its REST API: trees, ids, kinds and OpenInference attributes.

The exchanges are built the way the edge builds them (raw request bytes, the mock provider's raw replies and SSE
chunks, trace ids chosen before the upstream call) and handed to the real `TracingObserver`, which ships them to
the real span exporter process, which writes OTLP protobuf and posts it to Phoenix (named as Phoenix, or as a
plain OTLP collector).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from sluice.exchange import Exchange
from sluice.telemetry.spans import FIRST_TOKEN_EVENT
from sluice.telemetry.tracing import TracingObserver
from tests.phoenix import Phoenix
from tests.telemetry_support import CHAT_BODY, TOOL_STREAM_BODY, caller_traceparent, exchange

pytestmark = pytest.mark.anyio
IDENTITY = {b"x-session-id": "session.id", b"x-user-id": "user.id"}


def settings(kind: str, phoenix: Phoenix, project: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "endpoint": phoenix.url, "project": project, "version": "test",
            "provider_types": {"mock": "openai"}, **extra}


async def ship(worker_settings: dict[str, Any], *exchanges: Exchange) -> None:
    observer = TracingObserver(worker_settings, IDENTITY)
    await observer.start()
    for item in exchanges:
        observer.observe(item)
    await observer.aclose()  # the exporter exits only after its batch processor has exported everything
    assert observer.dropped == 0


def tree(phoenix: Phoenix, project: str, item: Exchange) -> tuple[dict[str, Any], dict[str, Any]]:
    assert item.trace is not None
    spans = phoenix.wait_for_spans(project, 2, trace_id=item.trace.trace_id)
    assert len(spans) == 2, spans
    by_id = {span["context"]["span_id"]: span for span in spans}
    return by_id[item.trace.server_span_id], by_id[item.trace.upstream_span_id]


async def test_chat_stream_and_embeddings_make_the_right_trees(phoenix: Phoenix) -> None:
    project = f"sluice-{uuid.uuid4().hex[:8]}"
    caller_trace, caller_span, traceparent = caller_traceparent()  # Phoenix files a known trace id under its project
    chat = exchange("chat", CHAT_BODY, traceparent=traceparent,
                    headers=[(b"X-Session-Id", b"session-7"), (b"x-user-id", b"ada")])
    stream = exchange("chat", TOOL_STREAM_BODY)
    embeddings = exchange("embeddings", {"model": "mock", "input": ["first text", "second"]})
    await ship(settings("phoenix", phoenix, project), chat, stream, embeddings)

    server, llm = tree(phoenix, project, chat)
    assert server["context"]["trace_id"] == caller_trace == llm["context"]["trace_id"]
    assert server["parent_id"] == caller_span and llm["parent_id"] == server["context"]["span_id"]
    assert chat.trace is not None
    assert chat.trace.traceparent_for_upstream() == f"00-{caller_trace}-{llm['context']['span_id']}-01"
    assert (server["name"], server["span_kind"]) == ("POST /v1/chat/completions", "CHAIN")
    assert (llm["name"], llm["span_kind"]) == ("chat mock-1", "LLM")
    attributes = llm["attributes"]
    assert attributes["llm.model_name"] == "mock-1"
    assert (attributes["llm.provider"], attributes["llm.system"]) == ("openai", "openai")
    assert json.loads(attributes["llm.invocation_parameters"]) == {"temperature": 0.2, "max_tokens": 64}
    assert attributes["llm.input_messages.1.message.role"] == "user"
    assert attributes["llm.input_messages.1.message.content"] == "Say hello to Phoenix"
    assert attributes["llm.output_messages.0.message.content"] == "Say hello to Phoenix"
    assert (attributes["llm.token_count.prompt"], attributes["llm.token_count.completion"],
            attributes["llm.token_count.total"]) == (6, 4, 10)
    assert json.loads(attributes["input.value"]) == CHAT_BODY
    for span in (server, llm):
        assert span["attributes"]["session.id"] == "session-7" and span["attributes"]["user.id"] == "ada"
        assert span["attributes"]["sluice.request_id"] == chat.request_id
        assert span["attributes"]["sluice.key_id"] == "key-1"
        assert "sk-secret" not in json.dumps(span)
    assert server["attributes"]["http.response.status_code"] == 200

    server, llm = tree(phoenix, project, stream)
    assert server["parent_id"] is None and llm["parent_id"] == server["context"]["span_id"]
    assert [event["name"] for event in llm["events"]] == [FIRST_TOKEN_EVENT]
    attributes = llm["attributes"]
    call = "llm.output_messages.0.message.tool_calls.0.tool_call."
    assert attributes[call + "function.name"] == "get_weather"
    assert json.loads(attributes[call + "function.arguments"]) == {"input": "weather in Paris"}
    assert json.loads(attributes["llm.tools.0.tool.json_schema"])["function"]["name"] == "get_weather"
    assert attributes["llm.token_count.total"] == 6
    assert json.loads(attributes["output.value"])["choices"][0]["finish_reason"] == "tool_calls"

    server, embedding = tree(phoenix, project, embeddings)
    assert (embedding["name"], embedding["span_kind"]) == ("embeddings mock-1", "EMBEDDING")
    assert embedding["attributes"]["embedding.model_name"] == "mock-1"
    assert embedding["attributes"]["embedding.embeddings.0.embedding.text"] == "first text"
    assert "embedding\":[" not in embedding["attributes"]["output.value"]  # vectors stay out of spans


async def test_plain_otlp_exporter_hidden_contents_and_errors(phoenix: Phoenix) -> None:
    project = f"sluice-otlp-{uuid.uuid4().hex[:8]}"
    secret = {**CHAT_BODY, "messages": [{"role": "user", "content": "mail me at ada@example.com"}]}
    hidden = exchange("chat", secret)
    failed = exchange("chat", CHAT_BODY, status=504, error="Upstream provider 'mock' timed out.",
                      error_type="upstream_error", error_code="upstream_timeout", response_body=None)
    await ship(settings("otlp", phoenix, project, hide_outputs=True,
                        redaction={"pii": ["email"]}), hidden, failed)

    server, llm = tree(phoenix, project, hidden)
    assert "ada@example.com" not in json.dumps([server, llm])
    assert "[EMAIL]" in llm["attributes"]["input.value"]
    assert llm["attributes"]["llm.input_messages.0.message.content"] == "mail me at [EMAIL]"
    assert llm["attributes"]["output.value"] == "__REDACTED__"
    assert not any(name.startswith("llm.output_messages") for name in llm["attributes"])
    assert llm["attributes"]["llm.token_count.total"] == 8  # counts stay visible

    server, llm = tree(phoenix, project, failed)
    assert server["status_code"] == "ERROR" and llm["status_code"] == "ERROR"
    assert "timed out" in llm["status_message"]
