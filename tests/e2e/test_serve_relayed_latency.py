"""`sluice serve` answers a relayed (chunked) reply without waiting for the client's delayed ACK: the listening socket
the supervisor binds has TCP_NODELAY, which every accepted connection inherits. Without it each such answer on a
keep-alive connection took ~44 ms (Nagle's algorithm holding the last chunk until the client's ACK)."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.e2e.test_serve import run_serve
from tests.servers import serve


async def chunked(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"status":'
        yield b'"ok"}'

    return StreamingResponse(body(), media_type="application/json")


def test_a_chunked_reply_is_relayed_without_a_delayed_ack_stall(tmp_path: Path) -> None:
    upstream = Starlette(routes=[Route("/{path:path}", chunked)])
    with serve(upstream) as upstream_url:
        config = ("providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: mock-1}\n"
                  "request_log: {enabled: false}\n"
                  f'services:\n  up: {{instances: [{{url: "{upstream_url}"}}]}}\n'
                  'routes:\n  - {path: "/svc/**", service: up, strip_prefix: /svc, auth: public}\n')
        with run_serve(config, tmp_path) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
            timings = []
            for _ in range(30):  # one keep-alive connection, as a browser or an SDK holds it
                started = time.perf_counter()
                reply = http.get("/svc/items")
                timings.append(time.perf_counter() - started)
                assert reply.status_code == 200 and reply.json() == {"status": "ok"}
                assert "content-length" not in reply.headers  # relayed as it came, chunk by chunk
    assert statistics.median(timings) < 0.02, f"median {statistics.median(timings) * 1000:.1f} ms"
