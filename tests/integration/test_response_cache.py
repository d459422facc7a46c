"""The response cache in a served gateway against a real fake upstream (whose `state.requests` shows what reached it):
hits, misses, Cache-Control, isolation between keys, single flight, TTL, Redis shared by two gateways or down, and
hits charged nothing (budgets, token limits)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from sluice.limits.periods import period_key
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Delay, Hang, Reply, create_fake_openai, usage
from tests.limits_support import needs_redis, redis_backend, redis_url
from tests.servers import free_port, serve
from tests.telemetry_support import Collector

KEY_B = "sk-cache-other-key"
ADMIN = "sk-cache-admin"
HELLO = [{"role": "user", "content": "hello there"}]
CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key, retries: {{attempts: 0}},
        timeout: {{connect: 1, read: 1}}}}
models:
  - {{name: gpt, provider: up, model: gpt-test, aliases: [gpt-alias], cache: {{ttl_seconds: {ttl}}}}}
  - {{name: shared, provider: up, model: gpt-test, cache: {{ttl_seconds: 60, shared: true}}}}
  - {{name: plain, provider: up, model: gpt-test}}
  - {{name: embed, provider: up, model: text-embedding-3-small, cache: {{ttl_seconds: 60}}}}
limits: {{{limits}}}
static_keys:
  - {{key: {key_b}, name: other{key_b_extra}}}
request_log: {{enabled: false}}
metrics: {{require_key: false}}
prices: {{gpt: {{input_per_million: 3.0, output_per_million: 7.0}}}}
"""
COST = (2 * 3.0 + 3 * 7.0) / 1e6
"""The fake upstream counts words: "hello there" is 2 prompt tokens, "echo: hello there" 3 completion tokens."""
BACKENDS = ["memory", pytest.param("redis", marks=[pytest.mark.redis, needs_redis])]
_PREFIXES: dict[str, str] = {}
"""The Redis key prefix of each gateway served with the Redis backend, by URL."""


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app: Starlette = create_fake_openai()
    with serve(app) as url:
        app.state.url = url
        yield app


@contextlib.contextmanager
def gateway(upstream: Starlette, backend: str = "memory", *, ttl: float = 60, limits: str = "",
            key_b_extra: str = "", **settings: Any) -> Iterator[str]:
    """A gateway on `upstream` whose cache is in memory or in Redis under a key prefix of its own."""
    with contextlib.ExitStack() as stack:
        backend_yaml = ""
        if backend == "redis":
            found = stack.enter_context(redis_backend())
            backend_yaml, settings = found.yaml, {**found.settings, **settings}
        text = CONFIG.format(url=upstream.state.url, ttl=ttl, key_b=KEY_B, key_b_extra=key_b_extra,
                             limits=", ".join(part for part in (backend_yaml, limits) if part))
        url = stack.enter_context(run_gateway(text, keys=(DEV_KEY,), **settings))
        if backend == "redis":
            _PREFIXES[url] = found.yaml.split("redis_prefix: '")[1].rstrip("'")
        yield url


def chat(url: str, model: str = "gpt", *, key: str = DEV_KEY, cache_control: str | None = None,
         **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    reply = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=10,
                       json={"model": model, "messages": HELLO, **extra})
    assert reply.status_code == 200, reply.text
    return reply


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def wait_until_stored(url: str, reply: httpx.Response) -> None:
    """With Redis the entry is written after the answer: wait until `reply` is what the gateway's prefix holds
    (the memory store holds it before the answer is sent)."""
    prefix = _PREFIXES.get(url)
    if prefix is None:
        return
    wanted = reply.json()["id"].encode()
    client = redis.Redis.from_url(redis_url())
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if any(wanted in (client.get(key) or b"") for key in client.scan_iter(match=prefix + "cache:*")):
                return
            time.sleep(0.01)
    finally:
        client.close()
    raise AssertionError(f"{wanted!r} was not stored in Redis")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_repeated_request_is_a_hit_the_upstream_never_sees(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend) as url:
        first = chat(url)
        wait_until_stored(url, first)
        second = chat(url, user="someone", stream=False)  # fields that do not change the answer
        other = chat(url, temperature=0.5)  # one that does
        hits = metric(url, "sluice_cache_requests_total", model="gpt", result="hit")
    assert (first.headers["x-cache"], second.headers["x-cache"], other.headers["x-cache"]) == ("MISS", "HIT", "MISS")
    assert second.content == first.content and second.json()["id"] == first.json()["id"]
    assert first.headers["x-sluice-deployment"] == "up/gpt-test" and "x-sluice-deployment" not in second.headers
    assert other.json()["id"] != first.json()["id"]
    assert len(upstream.state.requests) == 2
    assert hits == 1


def test_streams_and_models_without_a_cache_bypass_it(upstream: Starlette) -> None:
    with gateway(upstream) as url:
        plain = [chat(url, "plain") for _ in range(2)]
        chat(url)
        streamed = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                              json={"model": "gpt", "messages": HELLO, "stream": True}, timeout=10)
        models = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {DEV_KEY}"})
    assert [reply.headers["x-cache"] for reply in plain] == ["BYPASS", "BYPASS"]
    assert plain[0].json()["id"] != plain[1].json()["id"]
    assert streamed.status_code == 200 and streamed.headers["x-cache"] == "BYPASS"
    assert "data: " in streamed.text
    assert len(upstream.state.requests) == 4
    assert "x-cache" not in models.headers  # not a cacheable operation


def test_completions_and_embeddings_are_cached_and_an_alias_has_entries_of_its_own(upstream: Starlette) -> None:
    auth = {"Authorization": f"Bearer {DEV_KEY}"}
    with gateway(upstream) as url:
        embedded = [httpx.post(url + "/v1/embeddings", headers=auth, json={"model": "embed", "input": ["a", "b"]})
                    for _ in range(2)]
        completed = [httpx.post(url + "/v1/completions", headers=auth, json={"model": "gpt", "prompt": "hi"})
                     for _ in range(2)]
        chat(url)
        aliased = [chat(url, "gpt-alias") for _ in range(2)]
    assert [reply.headers["x-cache"] for reply in embedded] == ["MISS", "HIT"]
    assert embedded[0].content == embedded[1].content
    assert [reply.headers["x-cache"] for reply in completed] == ["MISS", "HIT"]
    assert [reply.headers["x-cache"] for reply in aliased] == ["MISS", "HIT"]
    assert len(upstream.state.requests) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_cache_skips_the_lookup_and_stores_the_fresh_answer(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend) as url:
        first = chat(url)
        wait_until_stored(url, first)
        fresh = chat(url, cache_control="no-cache")
        wait_until_stored(url, fresh)
        after = chat(url)
    assert fresh.headers["x-cache"] == "BYPASS" and fresh.json()["id"] != first.json()["id"]
    assert after.headers["x-cache"] == "HIT" and after.json()["id"] == fresh.json()["id"]
    assert len(upstream.state.requests) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_store_neither_reads_nor_writes(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend) as url:
        unstored = chat(url, cache_control="no-store")
        time.sleep(0.2 if backend == "redis" else 0)  # what it would write, were it to write
        first = chat(url)
        wait_until_stored(url, first)
        unread = chat(url, cache_control="no-store")
        time.sleep(0.2 if backend == "redis" else 0)  # what it would write, were it to write
        after = chat(url)
    assert unstored.headers["x-cache"] == "BYPASS" and first.headers["x-cache"] == "MISS"
    assert first.json()["id"] != unstored.json()["id"]
    assert unread.headers["x-cache"] == "BYPASS" and unread.json()["id"] != first.json()["id"]
    assert after.headers["x-cache"] == "HIT" and after.json()["id"] == first.json()["id"]  # not overwritten
    assert len(upstream.state.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_age_accepts_an_entry_at_most_that_old(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend) as url:
        first = chat(url)
        wait_until_stored(url, first)
        zero = chat(url, cache_control="max-age=0")
        time.sleep(1.2)
        lenient = chat(url, cache_control="max-age=60")
        strict = chat(url, cache_control="max-age=1")
        wait_until_stored(url, strict)
        refreshed = chat(url, cache_control="no-transform, max-age=1")
    assert zero.headers["x-cache"] == "MISS" and zero.json()["id"] != first.json()["id"]
    assert lenient.headers["x-cache"] == "HIT" and lenient.json()["id"] == zero.json()["id"]
    assert strict.headers["x-cache"] == "MISS" and strict.json()["id"] != zero.json()["id"]
    assert refreshed.headers["x-cache"] == "HIT" and refreshed.json()["id"] == strict.json()["id"]
    assert len(upstream.state.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_entries_are_per_key_unless_the_model_shares_them(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend) as url:
        mine = chat(url)
        wait_until_stored(url, mine)
        theirs = chat(url, key=KEY_B)
        again = chat(url)
        shared_mine = chat(url, "shared")
        wait_until_stored(url, shared_mine)
        shared_theirs = chat(url, "shared", key=KEY_B)
    assert (mine.headers["x-cache"], theirs.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "MISS", "HIT")
    assert theirs.json()["id"] != mine.json()["id"] and again.json()["id"] == mine.json()["id"]
    assert (shared_mine.headers["x-cache"], shared_theirs.headers["x-cache"]) == ("MISS", "HIT")
    assert shared_theirs.json()["id"] == shared_mine.json()["id"]
    assert len(upstream.state.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_concurrent_requests_make_one_upstream_call(upstream: Starlette, backend: str) -> None:
    upstream.state.script.append(Delay(0.5))

    async def ten(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"},
                                     timeout=10) as client:
            return await asyncio.gather(*(client.post("/v1/chat/completions", json={"model": "gpt",
                                                                                    "messages": HELLO})
                                          for _ in range(10)))

    with gateway(upstream, backend) as url:
        replies = asyncio.run(ten(url))
    assert [reply.status_code for reply in replies] == [200] * 10
    assert len({reply.content for reply in replies}) == 1
    assert sorted(reply.headers["x-cache"] for reply in replies) == ["HIT"] * 9 + ["MISS"]
    assert len(upstream.state.requests) == 1


def test_waiters_get_the_error_of_the_call_they_waited_for_and_errors_are_not_stored(upstream: Starlette) -> None:
    upstream.state.script.append(Hang())  # a read timeout after 1 s: 504

    async def three(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"},
                                     timeout=10) as client:
            return await asyncio.gather(*(client.post("/v1/chat/completions", json={"model": "gpt",
                                                                                    "messages": HELLO})
                                          for _ in range(3)))

    with gateway(upstream) as url:
        failed = asyncio.run(three(url))
        after = chat(url)
    assert [reply.status_code for reply in failed] == [504] * 3
    assert all("x-cache" not in reply.headers for reply in failed)
    assert after.headers["x-cache"] == "MISS"
    assert len(upstream.state.requests) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_entry_expires_after_its_ttl(upstream: Starlette, backend: str) -> None:
    with gateway(upstream, backend, ttl=0.5) as url:
        first = chat(url)
        wait_until_stored(url, first)
        hit = chat(url)
        time.sleep(0.7)
        expired = chat(url)
    assert [first.headers["x-cache"], hit.headers["x-cache"], expired.headers["x-cache"]] == ["MISS", "HIT", "MISS"]
    assert expired.json()["id"] != first.json()["id"]
    assert len(upstream.state.requests) == 2


@needs_redis
@pytest.mark.redis
def test_two_gateways_sharing_redis_share_entries(upstream: Starlette) -> None:
    with redis_backend() as backend:
        text = CONFIG.format(url=upstream.state.url, ttl=60, key_b=KEY_B, key_b_extra="", limits=backend.yaml)
        settings = {**backend.settings, "key_pepper": "the-pepper-every-instance-shares"}  # same key ids
        with run_gateway(text, **settings) as one, run_gateway(text, **settings) as two:
            _PREFIXES[one] = backend.yaml.split("redis_prefix: '")[1].rstrip("'")
            first = chat(one)
            wait_until_stored(one, first)
            second = chat(two)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.content == first.content
    assert len(upstream.state.requests) == 1


def test_redis_down_serves_every_request_as_a_miss_and_counts_it(upstream: Starlette) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with gateway(upstream, limits="backend: memory, redis_timeout_seconds: 0.2", redis_url=closed) as url:
        started = time.monotonic()
        replies = [chat(url) for _ in range(3)]
        took = time.monotonic() - started
        failures = metric(url, "sluice_cache_failures_total")
    assert [reply.headers["x-cache"] for reply in replies] == ["MISS"] * 3
    assert len(upstream.state.requests) == 3
    assert failures >= 3
    assert took < 2


def test_hits_charge_no_tokens_to_a_token_limit(upstream: Starlette) -> None:
    big = {"id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "gpt-test",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "long"}, "finish_reason": "stop"}],
           "usage": usage(900, 2100)}
    upstream.state.script.append(Reply(200, big))
    with gateway(upstream, limits="backend: memory", key_b_extra=", limits: {tokens_per_minute: 5000}") as url:
        replies = [httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY_B}"},
                              json={"model": "gpt", "messages": HELLO, "max_tokens": 5}, timeout=10)
                   for _ in range(5)]
    assert [reply.status_code for reply in replies] == [200] * 5, replies[-1].text
    assert [reply.headers["x-cache"] for reply in replies] == ["MISS"] + ["HIT"] * 4
    assert len(upstream.state.requests) == 1


def test_hits_are_not_charged_to_a_budget(upstream: Starlette) -> None:
    with gateway(upstream, key_b_extra=", budget: {usd: 100, period: daily}", admin_key=ADMIN) as url:
        replies = [chat(url, key=KEY_B) for _ in range(4)]
        row = _spend(url, "other")
    assert [reply.headers["x-cache"] for reply in replies] == ["MISS", "HIT", "HIT", "HIT"]
    assert row["requests"] == 1
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2, 3)
    assert row["spent_usd"] == pytest.approx(COST)


def _spend(url: str, key_id: str) -> dict[str, Any]:
    """The key's spend row of today, once the ledger has written every charge it holds (it writes every second)."""
    params = {"key_id": key_id, "period": period_key("daily", datetime.now(UTC))}
    deadline = time.monotonic() + 5
    while True:
        reply = httpx.get(url + "/admin/spend", params=params, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()["data"]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(1.5)  # a charge for a hit, if any, would be written within a second of the first
    reply = httpx.get(url + "/admin/spend", params=params, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    rows = reply.json()["data"]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_hit_is_logged_and_traced_without_an_upstream_call(upstream: Starlette) -> None:
    collector = Collector()
    text = CONFIG.format(url=upstream.state.url, ttl=60, key_b=KEY_B, key_b_extra="", limits="").replace(
        "request_log: {enabled: false}", "request_log: {flush_interval_seconds: 0.05}")
    with serve(collector.app) as traces, \
            run_gateway(text, admin_key=ADMIN, otel_exporter_otlp_endpoint=traces) as url:
        miss, hit = chat(url), chat(url)
        rows = _logged(url, 2)
        spans = _spans(collector, 3)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    by_request = {row["request_id"]: row for row in rows}
    hit_row, miss_row = by_request[hit.headers["x-request-id"]], by_request[miss.headers["x-request-id"]]
    assert miss_row["provider"]["name"] == "up" and miss_row["timing"]["provider_latency_ms"] > 0
    assert hit_row["provider"]["name"] is None and hit_row["timing"]["provider_latency_ms"] == 0
    assert hit_row["response"]["status_code"] == 200
    names = sorted(sorted(span.name for span in trace) for trace in spans.values())
    assert names == [["POST /v1/chat/completions"], ["POST /v1/chat/completions", "chat gpt-test"]]


def test_a_hit_is_logged_with_zero_cost(upstream: Starlette) -> None:
    text = CONFIG.format(url=upstream.state.url, ttl=60, key_b=KEY_B, key_b_extra="", limits="").replace(
        "request_log: {enabled: false}", "request_log: {flush_interval_seconds: 0.05}")
    with run_gateway(text, admin_key=ADMIN) as url:
        miss, hit = chat(url), chat(url)
        rows = {row["request_id"]: row for row in _logged(url, 2)}
    assert rows[miss.headers["x-request-id"]]["cost_usd"] > 0
    assert rows[hit.headers["x-request-id"]]["cost_usd"] == 0


def _logged(url: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        reply = httpx.get(url + "/admin/logs", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        data: list[dict[str, Any]] = reply.json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def _spans(collector: Collector, count: int) -> dict[bytes, list[Any]]:
    """The spans the collector was sent, by trace id, once there are `count`."""
    deadline = time.monotonic() + 10
    while True:
        by_trace: dict[bytes, list[Any]] = {}
        for _, _, body in list(collector.seen):
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        by_trace.setdefault(span.trace_id, []).append(span)
        if sum(map(len, by_trace.values())) >= count or time.monotonic() > deadline:
            return by_trace
        time.sleep(0.1)


def _post(url: str, body: bytes, *, key: str = DEV_KEY, query: str = "", **headers: str) -> httpx.Response:
    """A chat request of exactly these bytes (the cache remembers a key's bytes before it parses them)."""
    return httpx.post(url + "/v1/chat/completions" + query, content=body, timeout=10,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers})


def test_the_same_bytes_reworded_or_with_a_stream_mode_go_the_whole_way(upstream: Starlette) -> None:
    same = b'{"model": "gpt", "messages": [{"role": "user", "content": "hello there"}]}'
    reworded = b'{"messages":[{"content":"hello there","role":"user"}],\n "model":"gpt"}'
    with gateway(upstream) as url:
        first, repeated, other = _post(url, same), _post(url, same), _post(url, reworded)
        streamed = _post(url, same, query="?stream_mode=sse")
        as_json = _post(url, same, **{"X-Stream-Mode": "json"})
        unknown_mode = _post(url, same, query="?stream_mode=telegraph")
        hits = metric(url, "sluice_cache_requests_total", model="gpt", result="hit")
    assert [r.headers["x-cache"] for r in (first, repeated, other)] == ["MISS", "HIT", "HIT"]
    assert repeated.content == first.content and other.content == first.content
    assert streamed.status_code == 200 and streamed.headers["x-cache"] == "BYPASS" and "data: " in streamed.text
    assert as_json.headers["x-cache"] == "HIT" and as_json.content == first.content
    assert unknown_mode.status_code == 400 and unknown_mode.json()["error"]["code"] == "invalid_stream_mode"
    assert len(upstream.state.requests) == 2  # the first, and the stream
    assert hits == 3


def test_remembered_bytes_still_pass_the_keys_scopes_budget_and_cache_control(upstream: Starlette) -> None:
    body = b'{"model": "gpt", "messages": [{"role": "user", "content": "hello there"}]}'
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with gateway(upstream, key_b_extra=", budget: {usd: 0.00001, period: daily}", admin_key=ADMIN) as url:
        created = httpx.post(url + "/admin/keys", headers=admin, timeout=10, json={"name": "scoped"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        allowed = [_post(url, body, key=key) for _ in range(2)]
        no_store = _post(url, body, key=key, **{"Cache-Control": "no-store"})
        no_cache = _post(url, body, key=key, **{"Cache-Control": "no-cache"})
        fresh = _post(url, body, key=key, **{"Cache-Control": "max-age=60"})
        changed = httpx.patch(url + f"/admin/keys/{key_id}", headers=admin, timeout=10, json={"models": ["plain"]})
        assert changed.status_code == 200, changed.text
        refused = _post(url, body, key=key)
        spent = [_post(url, body, key=KEY_B) for _ in range(2)]  # the first spends more than the budget
    assert [r.headers["x-cache"] for r in allowed] == ["MISS", "HIT"]
    assert no_store.headers["x-cache"] == "BYPASS" and no_store.json()["id"] != allowed[0].json()["id"]
    assert no_cache.headers["x-cache"] == "BYPASS" and no_cache.json()["id"] != allowed[0].json()["id"]
    assert fresh.headers["x-cache"] == "HIT" and fresh.json()["id"] == no_cache.json()["id"]
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert spent[0].status_code == 200 and spent[0].headers["x-cache"] == "MISS"
    assert spent[1].status_code == 429 and spent[1].json()["error"]["code"] == "insufficient_quota"
    assert len(upstream.state.requests) == 4
