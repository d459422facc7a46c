"""Upstreams that misbehave after a 200 (non-JSON bodies, broken streams) and upstream `Retry-After` hints, as the
official SDKs, the request log and /metrics see them, against real loopback upstreams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.anthropic import create_fake_anthropic, text_stream
from tests.fakes.openai import ConnectionReset, Error, chat_chunk, create_fake_openai
from tests.servers import serve

ADMIN = "sk-admin-test"
CONFIG = """
providers:
  up: {{type: openai, base_url: "{openai}/v1", api_key: upstream-key, retries: {{attempts: 0}}}}
  retrying:
    type: openai
    base_url: "{openai}/v1"
    api_key: upstream-key
    breaker: {{enabled: false}}
    retries: {{attempts: 2, backoff_initial_seconds: 0.01, backoff_max_seconds: 0.05, max_retry_after_seconds: 1}}
  spare: {{type: openai, base_url: "{spare}/v1", api_key: upstream-key, retries: {{attempts: 0}}}}
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: ant-secret, retries: {{attempts: 0}}}}
models:
  - {{name: gpt-test, provider: up, model: gpt-test}}
  - {{name: retried, provider: retrying, model: gpt-test}}
  - {{name: spare, provider: spare, model: gpt-test}}
  - {{name: backed, provider: up, model: gpt-test, fallbacks: [spare]}}
  - {{name: claude, provider: claude, model: claude-fake-1}}
request_log: {{flush_interval_seconds: 0.05}}
"""
HELLO: Any = [{"role": "user", "content": "hello"}]
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Raw:
    """One scripted reply: `status`, `headers`, the body in `pieces` (a few ms apart), then the connection dropped
    without ending the body when `reset`."""

    pieces: list[bytes]
    status: int = 200
    content_type: str = "text/event-stream"
    reset: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class RawFirst:
    """A fake upstream whose requests take the next scripted `Raw` reply while there is one, else the fake's own."""

    def __init__(self, fake: Starlette) -> None:
        self.fake = fake
        self.script: list[Raw] = []
        self.hits = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.hits += 1
        if scope["type"] != "http" or not self.script:
            await self.fake(scope, receive, send)
            return
        raw = self.script.pop(0)
        await Request(scope, receive).body()

        async def body() -> AsyncIterator[bytes]:
            for piece in raw.pieces:
                yield piece
                await anyio.sleep(0.005)  # each piece its own write
            if raw.reset:
                raise ConnectionReset("scripted cut")

        response = StreamingResponse(body(), status_code=raw.status, media_type=raw.content_type,
                                     headers=raw.headers)
        await response(scope, receive, send)


@dataclass
class Upstreams:
    openai: RawFirst
    spare: RawFirst
    anthropic: RawFirst


@dataclass
class Gateway:
    url: str
    sdk: openai.OpenAI
    http: httpx.Client


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    fakes = Upstreams(RawFirst(create_fake_openai()), RawFirst(create_fake_openai()),
                      RawFirst(create_fake_anthropic(api_key="ant-secret")))
    with serve(fakes.openai) as a, serve(fakes.spare) as b, serve(fakes.anthropic) as c:
        fakes.openai.fake.state.url, fakes.spare.fake.state.url, fakes.anthropic.fake.state.url = a, b, c
        yield fakes


@pytest.fixture
def gateway(upstreams: Upstreams, tmp_path: Path) -> Iterator[Gateway]:
    config = CONFIG.format(openai=upstreams.openai.fake.state.url, spare=upstreams.spare.fake.state.url,
                           anthropic=upstreams.anthropic.fake.state.url)
    with run_gateway(config, data_dir=str(tmp_path), admin_key=ADMIN) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10) as http:
        yield Gateway(url, openai.OpenAI(base_url=url + "/v1", api_key=DEV_KEY, max_retries=0), http)


def event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


FIRST = event(chat_chunk("", role="assistant"))
HEL = event(chat_chunk("Hel"))


def stream_chat(gateway: Gateway, model: str = "gpt-test") -> list[str]:
    """The streamed answer's text pieces, read with the SDK (it raises on an error event)."""
    stream = gateway.sdk.chat.completions.create(model=model, messages=HELLO, stream=True)
    return [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]


def upstream_errors(gateway: Gateway, provider: str, kind: str) -> float:
    text = gateway.http.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sluice_upstream_errors_total" and sample.labels == {"provider": provider,
                                                                                      "kind": kind}:
                return sample.value
    return 0.0


def log_rows(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """The newest `count` request log rows, newest first, once written."""
    deadline = time.monotonic() + 3
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5) as admin:
        while True:
            rows: list[dict[str, Any]] = admin.get("/admin/logs", params={"limit": 20}).json()["data"]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


def assert_still_serving(gateway: Gateway, model: str = "gpt-test") -> None:
    reply = gateway.sdk.chat.completions.create(model=model, messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello"
    assert "".join(stream_chat(gateway, model)) == "echo: hello"


# --- complete replies ----------------------------------------------------------------------------------------


def test_an_html_200_for_chat_is_a_502_the_sdk_raises(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([HTML], content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.sdk.chat.completions.create(model="gpt-test", messages=HELLO)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
    body = raised.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["type"] == "upstream_error"
    assert "'up'" in body["error"]["message"] and "<!DOCTYPE html>" in body["error"]["message"]
    [row] = log_rows(gateway, 1)
    assert row["response"]["status_code"] == 502 and "not a chat completion" in row["error"]
    assert upstream_errors(gateway, "up", "protocol") == 1
    assert_still_serving(gateway)


@pytest.mark.parametrize("body", [b'[{"choices": []}]', b'{"id": "chatcmpl-1", "object": "chat.completion"}',
                                  b'{"id": "chatcmpl-1", "choices": [{"index": 0', b""])
def test_json_that_is_not_a_chat_completion_is_a_502(upstreams: Upstreams, gateway: Gateway, body: bytes) -> None:
    upstreams.openai.script.append(Raw([body], content_type="application/json"))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "upstream_protocol_error"


def test_an_error_object_with_a_200_is_a_502_with_the_upstreams_message(upstreams: Upstreams,
                                                                        gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([b'{"error": {"message": "model is loading"}}'],
                                       content_type="application/json"))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert reply.status_code == 502 and "model is loading" in reply.json()["error"]["message"]


def test_a_non_json_200_goes_to_the_fallback(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([HTML], content_type="text/html"))
    reply = gateway.sdk.chat.completions.with_raw_response.create(model="backed", messages=HELLO)
    assert reply.parse().choices[0].message.content == "echo: hello"
    assert reply.headers["x-sluice-deployment"] == "spare/gpt-test" and upstreams.spare.hits == 1


def test_a_non_json_200_from_anthropic_is_a_502_not_a_500(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.anthropic.script += [Raw([HTML], content_type="text/html"),
                                   Raw([b'{"type": "message", "content": "not a list"}'],
                                       content_type="application/json")]
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as raised:
            gateway.sdk.chat.completions.create(model="claude", messages=HELLO)
        assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
        assert "'claude'" in raised.value.message
    assert upstream_errors(gateway, "claude", "protocol") == 2
    assert gateway.sdk.chat.completions.create(model="claude", messages=HELLO).choices[0].message.content \
        == "echo: hello"


# --- streams, after the first byte ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pieces", "reset", "says"), [
    ([FIRST, HEL], False, "before `data: [DONE]`"),                         # ends early, cleanly
    ([FIRST, HEL, HEL[:30]], False, "mid-event"),                           # ends in the middle of an event
    ([FIRST, HEL, b"<html>oops</html>\n", HEL], False, "not server-sent events"),
    ([FIRST, HEL, b"data: Internal Server Error\n\n"], False, "neither JSON nor [DONE]"),
    ([FIRST, HEL, HEL[:30]], True, "could not be reached"),                 # the connection dropped mid-event
])
def test_a_broken_stream_raises_api_error_after_its_chunks(upstreams: Upstreams, gateway: Gateway,
                                                           pieces: list[bytes], reset: bool, says: str) -> None:
    upstreams.openai.script.append(Raw(pieces, reset=reset))
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in gateway.sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Hel"]  # every whole event before the failure, then the SDK's APIError
    assert not isinstance(raised.value, openai.APIStatusError) and says in raised.value.message
    [row] = log_rows(gateway, 1)
    assert row["stream"] is True and row["response"]["status_code"] == 200 and says in row["error"]
    kind = "unreachable" if reset else "protocol"
    assert upstream_errors(gateway, "up", kind) == 1
    assert_still_serving(gateway)


def test_the_wire_ends_on_an_event_boundary_with_one_error_event(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([FIRST, HEL, HEL[:30]]))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO, "stream": True})
    assert reply.status_code == 200
    events = reply.content.split(b"\n\n")
    assert events[:2] == [FIRST[:-2], HEL[:-2]] and events[-1] == b""
    assert events[2].startswith(b'data: {"error":') and len(events) == 4  # the cut event never reached the client


def test_keep_alives_comments_and_fields_are_not_garbage(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([b": keep-alive\n\n", b"retry: 1000\nid: 1\n" + FIRST,
                                        b"event: message\r\n" + HEL.replace(b"\n", b"\r\n"),
                                        HEL[:25], HEL[25:], b"data: [DONE]"]))
    assert stream_chat(gateway) == ["", "Hel", "Hel"]
    [row] = log_rows(gateway, 1)
    assert row["response"]["status_code"] == 200 and row["error"] is None


def test_an_upstream_error_event_is_passed_on_once(upstreams: Upstreams, gateway: Gateway) -> None:
    error = b'data: {"error": {"message": "overloaded, try later", "type": "server_error", "code": "busy"}}\n\n'
    upstreams.openai.script.append(Raw([FIRST, HEL, error]))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO, "stream": True})
    assert reply.content.count(b'"error"') == 1 and b"overloaded, try later" in reply.content
    upstreams.openai.script.append(Raw([FIRST, HEL, error]))
    with pytest.raises(openai.APIError, match="overloaded, try later"):
        stream_chat(gateway)


def test_ndjson_mode_ends_a_broken_stream_with_an_error_line(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.script.append(Raw([FIRST, HEL]))
    reply = gateway.http.post("/v1/chat/completions?stream_mode=ndjson",
                              json={"model": "gpt-test", "messages": HELLO})
    lines = [orjson.loads(line) for line in reply.content.splitlines()]
    assert reply.status_code == 200 and len(lines) == 3
    assert lines[-1]["error"]["code"] == "upstream_protocol_error"


# --- streams, before the first byte ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    Raw([HTML], content_type="text/html"),                                  # an HTML page for a stream request
    Raw([b'{"id": "chatcmpl-1", "choices": []}'], content_type="application/json"),  # stream: true ignored
    Raw([]),                                                                # 200 and nothing at all
    Raw([FIRST[:20]]),                                                      # cut in its first event
])
def test_a_stream_that_fails_before_its_first_byte_is_a_502(upstreams: Upstreams, gateway: Gateway,
                                                            raw: Raw) -> None:
    upstreams.openai.script.append(raw)
    with pytest.raises(openai.APIStatusError) as raised:
        stream_chat(gateway)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
    assert raised.value.response.headers["x-request-id"]
    [row] = log_rows(gateway, 1)
    assert row["response"]["status_code"] == 502 and row["stream"] is True
    assert upstream_errors(gateway, "up", "protocol") == 1
    assert_still_serving(gateway)


# --- Anthropic streams translated ----------------------------------------------------------------------------


def anthropic_events(cut: int | None = None) -> list[bytes]:
    """The wire events of a streamed "Hello!" reply, the last `cut` of them left out."""
    events = [b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))
              for name, data in text_stream("Hello!", chunks=2)]
    return events[:-cut] if cut else events


@pytest.mark.parametrize(("pieces", "says"), [
    (anthropic_events(cut=1), "before message_stop"),
    (anthropic_events(cut=3) + [anthropic_events()[-3][:25]], "mid-event"),
    (anthropic_events(cut=3) + [b"<html>oops</html>\n\n"], "not server-sent events"),
    (anthropic_events(cut=3) + [b"event: content_block_delta\ndata: {oops\n\n"], "unreadable"),
])
def test_a_broken_anthropic_stream_raises_api_error(upstreams: Upstreams, gateway: Gateway,
                                                    pieces: list[bytes], says: str) -> None:
    upstreams.anthropic.script.append(Raw(pieces))
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in gateway.sdk.chat.completions.create(model="claude", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert received[:2] == ["", "Hel"]
    assert not isinstance(raised.value, openai.APIStatusError) and says in raised.value.message
    assert upstream_errors(gateway, "claude", "protocol") == 1
    assert "".join(stream_chat(gateway, "claude")) == "echo: hello"


def test_an_anthropic_stream_of_garbage_is_a_502(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.anthropic.script.append(Raw([HTML], content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as raised:
        stream_chat(gateway, "claude")
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
    [row] = log_rows(gateway, 1)
    assert row["response"]["status_code"] == 502 and row["provider"]["name"] == "claude"


# --- Retry-After ----------------------------------------------------------------------------------------------


def test_a_429s_retry_after_reaches_the_client(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.fake.state.script.append(Error(429, "Rate limit reached", type="requests",
                                                    code="rate_limit_exceeded", headers={"Retry-After": "7"}))
    with pytest.raises(openai.RateLimitError) as raised:
        gateway.sdk.chat.completions.create(model="gpt-test", messages=HELLO)
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.code == "rate_limit_exceeded"


def test_a_503s_retry_after_reaches_the_client_after_the_gateways_retries(upstreams: Upstreams,
                                                                          gateway: Gateway) -> None:
    now = formatdate(time.time(), usegmt=True)  # an HTTP date: retried at once, then passed on as sent
    upstreams.openai.fake.state.script += [Error(503, "busy", type="server_error", headers={"Retry-After": now})] * 3
    reply = gateway.http.post("/v1/chat/completions", json={"model": "retried", "messages": HELLO})
    assert reply.status_code == 503 and reply.headers["retry-after"] == now
    assert upstreams.openai.hits == 3  # the first try and both retries


def test_a_retry_after_too_long_to_wait_is_passed_on_at_once(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.fake.state.script.append(Error(503, "busy", type="server_error",
                                                    headers={"Retry-After": "30.2"}))
    started = time.monotonic()
    reply = gateway.http.post("/v1/chat/completions", json={"model": "retried", "messages": HELLO, "stream": True})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "31"  # whole seconds, rounded up
    assert time.monotonic() - started < 1 and upstreams.openai.hits == 1


def test_an_anthropic_retry_after_reaches_the_client(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.anthropic.script.append(Raw([b'{"type": "error", "error": {"type": "overloaded_error", '
                                           b'"message": "Overloaded"}}'], status=529,
                                          content_type="application/json", headers={"retry-after": "12"}))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "claude", "messages": HELLO})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "12"


def test_no_retry_after_once_a_fallback_answered(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.fake.state.script.append(Error(429, "slow down", type="requests", headers={"Retry-After": "7"}))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "backed", "messages": HELLO})
    assert reply.status_code == 200 and "retry-after" not in reply.headers
    assert upstreams.spare.hits == 1


def test_an_unreadable_retry_after_is_not_passed_on(upstreams: Upstreams, gateway: Gateway) -> None:
    upstreams.openai.fake.state.script.append(Error(429, "slow down", type="requests",
                                                    headers={"Retry-After": "soon"}))
    reply = gateway.http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert reply.status_code == 429 and "retry-after" not in reply.headers
