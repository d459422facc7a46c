"""A request refused by an open circuit breaker is traced as what it was: a server span with the error, no
upstream (LLM) span, since no upstream call was made."""

from __future__ import annotations

import os

import httpx

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Error, create_fake_openai
from tests.phoenix import Phoenix
from tests.servers import serve


def test_a_refused_request_has_no_upstream_span(phoenix: Phoenix) -> None:
    project = f"breaker-{os.urandom(4).hex()}"
    fake = create_fake_openai()
    fake.state.script += [Error(500, "boom", type="server_error")]
    with serve(fake) as upstream:
        config = f"""
providers:
  up:
    type: openai
    base_url: "{upstream}/v1"
    api_key: upstream-key
    breaker: {{failure_threshold: 1, open_seconds: 60}}
    retries: {{attempts: 0}}
models:
  - {{name: gpt, provider: up, model: gpt-test}}
telemetry: {{project: {project}}}
request_log: {{enabled: false}}
"""
        with run_gateway(config, phoenix_collector_endpoint=phoenix.url) as url:
            def chat() -> httpx.Response:
                return httpx.post(f"{url}/v1/chat/completions", timeout=10,
                                  headers={"Authorization": f"Bearer {DEV_KEY}"},
                                  json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
            failed, refused = chat(), chat()
        assert len(fake.state.requests) == 1
    assert failed.status_code == 500 and refused.status_code == 503
    spans = phoenix.wait_for_spans(project, 3)
    by_trace: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    kinds = sorted(sorted(str(span["span_kind"]) for span in trace) for trace in by_trace.values())
    assert kinds == [["CHAIN"], ["CHAIN", "LLM"]]  # the failed call reached the upstream, the refused one did not
