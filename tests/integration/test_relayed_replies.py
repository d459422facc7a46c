"""Chunked replies (no Content-Length) through a service route and provider passthrough: one that ends with its first
chunk is answered whole, one that trickles is still relayed as it comes (its first chunk before its second is
even written), and event streams are relayed from their first byte."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
PAUSE = 0.6


async def reply(request: Request) -> StreamingResponse:
    kind = request.path_params["kind"]

    async def body() -> AsyncIterator[bytes]:
        yield b"first;"
        if kind != "short":
            await asyncio.sleep(PAUSE)
            yield b"second"

    media = "text/event-stream" if kind == "events" else "application/octet-stream"
    return StreamingResponse(body(), media_type=media)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    upstream = Starlette(routes=[Route("/v1/{kind}", reply, methods=["GET", "POST"])])
    with serve(upstream) as url:
        config = f"""
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream"}}
models:
  - {{name: m, provider: up, model: m}}
request_log: {{enabled: false}}
services:
  svc: {{instances: [{{url: "{url}"}}]}}
routes:
  - {{path: "/svc/**", service: svc, strip_prefix: /svc}}
"""
        with run_gateway(config) as gateway_url:
            yield gateway_url


@pytest.mark.parametrize("prefix", ["/svc/v1", "/provider/up"])
def test_a_reply_that_ends_with_its_first_chunk_comes_whole(gateway: str, prefix: str) -> None:
    for _ in range(5):
        answer = httpx.get(gateway + prefix + "/short", headers=AUTH, timeout=10)
        assert answer.status_code == 200 and answer.content == b"first;"


@pytest.mark.parametrize("prefix", ["/svc/v1", "/provider/up"])
@pytest.mark.parametrize("kind", ["trickle", "events"])
def test_a_trickling_reply_is_relayed_as_it_comes(gateway: str, prefix: str, kind: str) -> None:
    started = time.monotonic()
    with httpx.stream("GET", gateway + prefix + "/" + kind, headers=AUTH, timeout=10) as answer:
        chunks = answer.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    assert first == b"first;" and rest == b"second"
    assert first_at < PAUSE * 0.7, f"first chunk after {first_at:.2f} s"
