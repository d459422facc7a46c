"""Through the real gateway: a caller's traceparent is continued, the upstream is told the LLM span's id, and the
spans land in Phoenix (project from config, session from the configured header)."""

from __future__ import annotations

import httpx

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.phoenix import Phoenix
from tests.servers import serve
from tests.telemetry_support import caller_traceparent


def test_a_chat_through_the_gateway_is_one_trace_with_the_callers_id(phoenix: Phoenix) -> None:
    trace_id, span_id, traceparent = caller_traceparent()
    fake = create_fake_openai()
    with serve(fake) as upstream:
        config = f"""
providers:
  up: {{type: openai, base_url: "{upstream}/v1", api_key: upstream-key}}
models:
  - {{name: gpt, provider: up, model: gpt-test}}
telemetry: {{project: gateway-{trace_id[:8]}, session_header: x-conversation}}
request_log: {{enabled: false}}
"""
        with run_gateway(config, phoenix_collector_endpoint=phoenix.url) as url:
            reply = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                               json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
                               headers={"Authorization": f"Bearer {DEV_KEY}", "traceparent": traceparent,
                                        "x-conversation": "conv-1"})
            assert reply.status_code == 200
        sent = fake.state.requests[0].headers["traceparent"]
    version, sent_trace, upstream_span, flags = sent.split("-")
    assert (version, sent_trace, flags) == ("00", trace_id, "01") and upstream_span != span_id
    spans = phoenix.wait_for_spans(f"gateway-{trace_id[:8]}", 2, trace_id=trace_id)
    by_id = {span["context"]["span_id"]: span for span in spans}
    llm = by_id[upstream_span]
    server = by_id[llm["parent_id"]]
    assert server["parent_id"] == span_id and server["span_kind"] == "CHAIN" and llm["span_kind"] == "LLM"
    assert llm["attributes"]["llm.model_name"] == "gpt-test" and llm["attributes"]["session.id"] == "conv-1"
    assert llm["attributes"]["llm.token_count.total"] > 0
