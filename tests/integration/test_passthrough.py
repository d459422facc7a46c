"""Provider endpoints `/provider/{name}/{path}` against a real loopback upstream: methods, bytes, headers, paths."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import Stream, chat_chunk, create_fake_openai
from tests.fakes.raw import ALL_METHODS, GZIP_JSON, payload
from tests.servers import free_port, serve

CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}
  root: {{type: openai, base_url: "{url}", api_key: upstream-key}}
  az: {{type: azure, base_url: "{azure}", api_key: azure-key, api_version: "2024-10-21"}}
  claude: {{type: anthropic, base_url: "{url}", api_key: claude-key, api_version: "2023-06-01"}}
  down: {{type: openai, base_url: "http://127.0.0.1:{closed}"}}
  mock: {{type: mock}}
"""
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    azure = create_fake_openai(azure=True)
    with serve(app) as url, serve(azure) as azure_url:
        app.state.url, app.state.azure_url = url, azure_url
        yield app


@pytest.fixture(scope="module")
def sluice_url(upstream: Starlette) -> Iterator[str]:
    config = CONFIG.format(url=upstream.state.url, azure=upstream.state.azure_url, closed=free_port())
    with run_gateway(config) as url:
        yield url


@pytest.fixture
def client(sluice_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sluice_url, headers=AUTH, timeout=20) as http_client:
        yield http_client


def echoed(reply: httpx.Response) -> dict[str, Any]:
    """The echo route's reflection, with the headers as a dict (last value wins) and the body decoded."""
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    data["header_pairs"] = [tuple(pair) for pair in data["headers"]]
    data["headers"] = dict(data["header_pairs"])
    data["body"] = base64.b64decode(data["body"])
    return data


def raw_request(base_url: str, method: str, target: str, headers: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
    """Send `target` exactly as written (no client-side normalisation of `..` or escapes)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(method, target, headers={**AUTH, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- methods, queries and bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_query_and_body_is_forwarded(client: httpx.Client, method: str) -> None:
    body = b"" if method in ("GET", "HEAD") else f"body of {method}".encode()
    reply = client.request(method, "/provider/root/raw/echo/a/b%20c?x=1&x=2&empty=&sp=%20z", content=body)
    assert reply.status_code == 200
    assert reply.headers["x-upstream-custom"] == "kept"
    if method == "HEAD":
        assert reply.content == b"" and int(reply.headers["content-length"]) > 0
        return
    seen = echoed(reply)
    assert seen["method"] == method
    assert seen["raw_path"] == "/raw/echo/a/b%20c"
    assert seen["query"] == "x=1&x=2&empty=&sp=%20z"
    assert seen["body"] == body


def test_binary_request_body_is_byte_identical(client: httpx.Client) -> None:
    data = payload(300_000, seed=3)
    reply = client.put("/provider/root/raw/echo/upload", content=data,
                       headers={"Content-Type": "application/octet-stream"})
    seen = echoed(reply)
    assert seen["body"] == data
    assert seen["headers"]["content-type"] == "application/octet-stream"
    assert seen["headers"]["content-length"] == str(len(data))


@pytest.mark.parametrize("size", [0, 1000, 200_000, 1_500_000])
def test_binary_response_is_byte_identical(client: httpx.Client, size: int) -> None:
    reply = client.get(f"/provider/root/raw/bytes?size={size}")
    assert reply.status_code == 200
    assert reply.content == payload(size)
    assert reply.headers["content-length"] == str(size)
    assert reply.headers["content-type"] == "application/octet-stream"


def test_large_streamed_response_is_byte_identical(client: httpx.Client) -> None:
    size = 6 * 1024 * 1024
    received = bytearray()
    with client.stream("GET", f"/provider/root/raw/stream?size={size}&chunk=65536") as reply:
        assert reply.status_code == 200 and "content-length" not in reply.headers
        for piece in reply.iter_raw():
            received += piece
    assert bytes(received) == payload(size)


# --- headers --------------------------------------------------------------------------------------------------


def test_upstream_headers_and_status_come_back_unchanged(client: httpx.Client) -> None:
    reply = client.get("/provider/root/raw/echo/x")
    assert reply.headers["x-upstream-custom"] == "kept"
    assert reply.headers["cache-control"] == "private, max-age=7"
    assert reply.headers["set-cookie"] == "upstream=1; Path=/"
    redirect = client.get("/provider/root/raw/redirect")
    assert redirect.status_code == 302 and redirect.headers["location"] == "/raw/echo/redirected"
    missing = client.get("/provider/up/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["message"].startswith("Invalid URL")


def test_gzip_bytes_pass_through_untouched(client: httpx.Client) -> None:
    with client.stream("GET", "/provider/root/raw/gzip", headers={"Accept-Encoding": "gzip"}) as reply:
        raw = b"".join(reply.iter_raw())
    assert reply.headers["content-encoding"] == "gzip"
    assert raw == gzip.compress(json.dumps(GZIP_JSON).encode(), mtime=0)
    assert reply.headers["content-length"] == str(len(raw))
    assert json.loads(gzip.decompress(raw)) == GZIP_JSON


def test_hop_by_hop_headers_are_removed_both_ways(client: httpx.Client) -> None:
    seen = echoed(client.get("/provider/root/raw/echo/hop", headers={
        "Connection": "keep-alive, x-drop-me", "X-Drop-Me": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "Trailer": "x-sum", "X-Kept": "yes"}))
    sent = {name for name, _ in seen["header_pairs"]}
    assert not sent & {"x-drop-me", "keep-alive", "te", "proxy-authorization", "trailer"}
    assert seen["headers"]["x-kept"] == "yes"
    reply = client.get("/provider/root/raw/hop")
    assert reply.content == b"hop" and reply.headers["x-end-to-end"] == "1"
    assert not {"x-hop-only", "keep-alive", "proxy-authenticate"} & set(reply.headers.keys())


def test_openai_credentials_injected_and_caller_key_not_forwarded(client: httpx.Client) -> None:
    seen = echoed(client.get("/provider/root/raw/echo/k", headers={"X-API-Key": DEV_KEY}))
    values = [value for _, value in seen["header_pairs"]]
    assert seen["headers"]["authorization"] == "Bearer upstream-key"
    assert "x-api-key" not in seen["headers"]
    assert not any(DEV_KEY in value for value in values)


def test_azure_gets_api_key_and_api_version(client: httpx.Client) -> None:
    seen = echoed(client.get("/provider/az/raw/echo/deployments?x=1"))
    assert seen["headers"]["api-key"] == "azure-key" and "authorization" not in seen["headers"]
    assert seen["query"] == "x=1&api-version=2024-10-21"
    own = echoed(client.get("/provider/az/raw/echo/deployments?api-version=2025-01-01"))
    assert own["query"] == "api-version=2025-01-01"


def test_anthropic_gets_x_api_key_and_version_unless_sent(client: httpx.Client) -> None:
    seen = echoed(client.post("/provider/claude/raw/echo/v1/messages", headers={"X-API-Key": DEV_KEY}, json={}))
    assert seen["headers"]["x-api-key"] == "claude-key" and "authorization" not in seen["headers"]
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    beta = echoed(client.post("/provider/claude/raw/echo/v1/messages", json={},
                              headers={"anthropic-version": "2099-01-01", "anthropic-beta": "tools"}))
    assert [value for name, value in beta["header_pairs"] if name == "anthropic-version"] == ["2099-01-01"]
    assert beta["headers"]["anthropic-beta"] == "tools"


def test_forwarded_headers_and_request_id(client: httpx.Client, sluice_url: str) -> None:
    reply = client.get("/provider/root/raw/echo/f", headers={"X-Request-ID": "rid-pass-1"})
    seen = echoed(reply)
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == urlsplit(sluice_url).netloc
    assert seen["headers"]["x-request-id"] == "rid-pass-1" and reply.headers["x-request-id"] == "rid-pass-1"
    generated = client.get("/provider/root/raw/echo/g")
    assert echoed(generated)["headers"]["x-request-id"] == generated.headers["x-request-id"]
    # The test server trusts loopback proxies, so it already reports 203.0.113.9 as the client: not appended twice.
    chained = echoed(client.get("/provider/root/raw/echo/h", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}))
    assert chained["headers"]["x-forwarded-for"] == "198.51.100.1, 203.0.113.9"


# --- path safety ----------------------------------------------------------------------------------------------

ESCAPES = [
    "/provider/root/../v1/models",
    "/provider/root/raw/../../v1/models",
    "/provider/root/./raw/echo/x",
    "/provider/root/%2e%2e/v1/models",
    "/provider/root/raw/%2E%2e/v1/models",
    "/provider/root/raw/.%2e/v1/models",
    "/provider/root/raw/%252e%252e/v1/models",
    "/provider/root/raw%2fecho/x",
    "/provider/root/raw%2Fecho/x",
    "/provider/root/raw%5cecho/x",
    "/provider/root/raw\\echo/x",
    "/provider/root//evil.example/x",
    "/provider/root/raw//echo",
    "/provider/root/http://evil.example/x",
    "/provider/root/https:%2f%2fevil.example/x",
    "/provider/root/%2f%2fevil.example/x",
    "/provider/root/@evil.example/x",
    "/provider/root/user:pw@evil.example/x",
    "/provider/root/raw/echo/%00x",
    "/provider/root/raw/echo/a%zzb",
]


@pytest.mark.parametrize("target", ESCAPES)
def test_path_escapes_are_rejected(upstream: Starlette, sluice_url: str, target: str) -> None:
    before = len(upstream.state.requests)
    status, body = raw_request(sluice_url, "GET", target)
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "invalid_path"
    assert len(upstream.state.requests) == before


def test_encoded_path_characters_that_are_safe_pass(client: httpx.Client, sluice_url: str) -> None:
    status, body = raw_request(sluice_url, "GET", "/provider/root/raw/echo/models/gemini:generate%20it/v@1")
    assert status == 200
    assert json.loads(body)["raw_path"] == "/raw/echo/models/gemini:generate%20it/v@1"


# --- streaming ------------------------------------------------------------------------------------------------


def test_slow_sse_chunks_arrive_one_by_one(client: httpx.Client) -> None:
    arrivals: list[float] = []
    started = time.monotonic()
    with client.stream("GET", "/provider/root/raw/sse?events=5&delay=0.2") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) == 5
    # Buffering shows as chunks arriving together (gaps near 0) or all at the end; a busy machine may delay one
    # chunk by 100 ms or so, which shortens the next gap but keeps it well apart and keeps the overall spread.
    assert all(gap > 0.05 for gap in gaps), gaps
    assert arrivals[-1] - arrivals[0] > 0.6, arrivals


def test_openai_stream_through_passthrough_and_disconnect_cancels(upstream: Starlette, client: httpx.Client) -> None:
    scripted = Stream([chat_chunk(role="assistant", content="")] + [chat_chunk(content="x")] * 100, delay=0.1)
    upstream.state.script.append(scripted)
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/provider/up/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                break
    assert upstream.state.requests[-1].headers["authorization"] == "Bearer upstream-key"
    deadline = time.monotonic() + 5
    while not scripted.abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted.abandoned


# --- errors ---------------------------------------------------------------------------------------------------


def test_unknown_provider_is_404(client: httpx.Client) -> None:
    reply = client.get("/provider/nope/v1/models")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "provider_not_found"


def test_mock_provider_has_no_upstream(client: httpx.Client) -> None:
    reply = client.post("/provider/mock/v1/chat/completions", json={})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "no_upstream" and "mock" in error["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}])
def test_missing_or_wrong_key_is_401(upstream: Starlette, sluice_url: str, headers: dict[str, str]) -> None:
    before = len(upstream.state.requests)
    reply = httpx.get(sluice_url + "/provider/up/models", headers=headers)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    assert len(upstream.state.requests) == before


def test_unreachable_upstream_is_502(client: httpx.Client) -> None:
    reply = client.get("/provider/down/anything")
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "upstream_unreachable"


def test_upstream_breaking_mid_body_truncates_the_response(upstream: Starlette, client: httpx.Client) -> None:
    upstream.state.script.append(Stream([chat_chunk(role="assistant", content="")], then_reset=True))
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/provider/up/chat/completions",
                                                                 json=body) as reply:
        assert reply.status_code == 200
        reply.read()


def test_passthrough_is_documented(sluice_url: str) -> None:
    document = httpx.get(sluice_url + "/openapi.json").json()
    assert set(document["paths"]["/provider/{name}/{path}"]) == {"get", "post", "put", "patch", "delete"}
