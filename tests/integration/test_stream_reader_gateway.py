"""A streamed tool-call reply through the real gateway: the request log row and the spans read the same final
message from the stream (one stream reader), names from each call's first delta and arguments joined by index."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Stream, chat_chunk, create_fake_openai, tool_call_deltas, usage_chunk
from tests.servers import serve
from tests.telemetry_support import Collector

ADMIN = "sk-admin-stream-reader"
WEATHER = '{"city": "Paris", "unit": "celsius"}'
TIME = '{"zone": "Europe/Paris"}'


def _stream(names_repeated: bool) -> Stream:
    """Two calls as OpenAI streams them: each call's id and name once, in its first delta; its arguments cut
    mid-JSON over the deltas after it, the second call's interleaved with the first's. Some OpenAI-compatible
    servers repeat the name in every delta: the name is still the name, not the name twice."""
    weather = tool_call_deltas(0, "call_weather", "get_weather", WEATHER, parts=4)
    clock = tool_call_deltas(1, "call_time", "get_time", TIME, parts=3)
    if names_repeated:
        for calls, name in ((weather, "get_weather"), (clock, "get_time")):
            for delta in calls[1:]:
                delta["function"]["name"] = name
    deltas = [weather[0], weather[1], clock[0], weather[2], clock[1], weather[3], clock[2], weather[4], clock[3]]
    chunks: list[Any] = [chat_chunk(role="assistant", tool_calls=[deltas[0]])]
    chunks += [chat_chunk(tool_calls=[delta]) for delta in deltas[1:]]
    return Stream([*chunks, chat_chunk(finish_reason="tool_calls"), usage_chunk(12, 9)])


def _spans(collector: Collector) -> list[dict[str, Any]]:
    spans = []
    for _, _, body in collector.seen:
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope in resource.scope_spans:
                spans += [{item.key: item.value.string_value or item.value.int_value for item in span.attributes}
                          for span in scope.spans]
    return spans


def _until(found: Any, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("names_repeated", [False, True], ids=["name-in-first-delta", "name-in-every-delta"])
def test_the_log_row_and_the_llm_span_agree_on_streamed_tool_calls(names_repeated: bool) -> None:
    fake, collector = create_fake_openai(), Collector()
    fake.state.script.append(_stream(names_repeated))
    with serve(fake) as upstream, serve(collector.app) as traces:
        config = f"""
providers:
  up: {{type: openai, base_url: "{upstream}/v1", api_key: upstream-key}}
models:
  - {{name: gpt, provider: up, model: gpt-test}}
telemetry: {{project: stream-reader}}
"""
        with run_gateway(config, admin_key=ADMIN, phoenix_collector_endpoint=traces) as url:
            body = {"model": "gpt", "stream": True, "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "weather and time in Paris"}],
                    "tools": [{"type": "function", "function": {"name": "get_weather"}},
                              {"type": "function", "function": {"name": "get_time"}}]}
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10,
                               headers={"Authorization": f"Bearer {DEV_KEY}"})
            assert reply.status_code == 200
            admin = {"Authorization": f"Bearer {ADMIN}"}
            rows = _until(lambda: httpx.get(f"{url}/admin/logs?include_bodies=true", headers=admin,
                                            timeout=10).json()["data"])
        llm = _until(lambda: [span for span in _spans(collector) if span.get("openinference.span.kind") == "LLM"])
    [row], [span] = rows, llm
    expected = [("call_weather", "get_weather", WEATHER), ("call_time", "get_time", TIME)]
    [choice] = row["response"]["body"]["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert [(call["id"], call["function"]["name"], call["function"]["arguments"])
            for call in choice["message"]["tool_calls"]] == expected
    assert row["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    prefix = "llm.output_messages.0.message.tool_calls"
    assert [(span[f"{prefix}.{number}.tool_call.id"], span[f"{prefix}.{number}.tool_call.function.name"],
             span[f"{prefix}.{number}.tool_call.function.arguments"]) for number in range(2)] == expected
    assert span["llm.finish_reason"] == "tool_calls" and span["llm.token_count.total"] == 21
    assert json.loads(span["output.value"])["choices"] == row["response"]["body"]["choices"]
