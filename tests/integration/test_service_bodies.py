"""Request bodies on service routes as the service receives them: a chunked upload that reached the gateway whole
goes upstream with its length (and may be tried on another instance); one that keeps coming is streamed."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import free_port, serve


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"method": request.method, "headers": dict(request.headers), "size": len(body),
                         "sha256": hashlib.sha256(body).hexdigest()})


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A route whose service has a dead instance and a live one, tried in turn (no breaker to skip the dead)."""
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "PUT", "POST"])])
    with serve(app) as live:
        config = f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{enabled: false}}
services:
  files:
    strategy: round_robin
    breaker: {{enabled: false}}
    instances: [{{url: "http://127.0.0.1:{free_port()}"}}, {{url: "{live}"}}]
    timeout: {{connect: 1, read: 5}}
routes:
  - {{path: "/files/**", service: files}}
"""
        with run_gateway(config) as url:
            yield url


def chunked_at_once(base: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, object]]:
    """`body` sent chunked, the request and its whole body in one write; the status and the JSON answer."""
    address = urlsplit(base)
    head = (f"{method} {path} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {DEV_KEY}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head + chunked)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    headers, _, content = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        content = dechunked(content)
    return int(status_line.split()[1]), json.loads(content)


def dechunked(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]
    return out


def test_a_chunked_upload_that_came_whole_goes_with_its_length_and_is_retried(gateway: str) -> None:
    body = b'{"name": "report.txt", "lines": 12}'
    answers = [chunked_at_once(gateway, "PUT", "/files/a", body) for _ in range(4)]
    # Round-robin puts every other try on the dead instance; each is tried again on the live one.
    assert [status for status, _ in answers] == [200] * 4
    for _, seen in answers:
        assert seen["size"] == len(body) and seen["sha256"] == hashlib.sha256(body).hexdigest()
        headers = seen["headers"]
        assert isinstance(headers, dict)
        assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers


def test_an_upload_that_keeps_coming_is_streamed_and_never_retried(gateway: str) -> None:
    payload = bytes(range(256)) * 1024

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(payload), 16_384):
            yield payload[start:start + 16_384]

    codes = []
    for _ in range(4):
        reply = httpx.post(gateway + "/files/upload", content=pieces(), timeout=10,
                           headers={"Authorization": f"Bearer {DEV_KEY}"})
        codes.append(reply.status_code)
        if reply.status_code == 200:
            seen = reply.json()
            assert seen["size"] == len(payload) and seen["sha256"] == hashlib.sha256(payload).hexdigest()
            assert seen["headers"].get("transfer-encoding") == "chunked"
    assert sorted(codes) == [200, 200, 502, 502]  # a POST met the dead instance every other time, not retried
