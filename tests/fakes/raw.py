"""Raw HTTP routes for passthrough tests, mounted under ``/raw/`` on the fake OpenAI upstream.

``/raw/echo/...``  any method: JSON with the method, raw path, raw query, header pairs and the body (base64)
``/raw/bytes``     ``?size=N``: N deterministic binary bytes with a Content-Length
``/raw/stream``    ``?size=N&chunk=M&delay=S``: the same bytes, streamed in M-byte chunks without a length
``/raw/gzip``      a gzip-compressed JSON body with ``Content-Encoding: gzip`` (whatever the request asked)
``/raw/redirect``  a 302 to ``/raw/echo/redirected``
``/raw/sse``       ``?events=N&delay=S``: N SSE events, S seconds apart
``/raw/hop``       a reply carrying hop-by-hop headers (``Keep-Alive``, one named in ``Connection``)
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
GZIP_JSON = {"compressed": True, "text": "squeezed " * 50}
UPSTREAM_HEADERS = {"x-upstream-custom": "kept", "cache-control": "private, max-age=7"}


def payload(size: int, seed: int = 7) -> bytes:
    """`size` deterministic pseudo-random bytes (every byte value occurs)."""
    return random.Random(seed).randbytes(size)


async def echo(request: Request) -> Response:
    body = await request.body()
    scope = request.scope
    reflected = {
        "method": request.method,
        "path": request.url.path,
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "body": base64.b64encode(body).decode(),
    }
    headers = {**UPSTREAM_HEADERS, "set-cookie": "upstream=1; Path=/"}
    return JSONResponse(reflected, headers=headers)


async def fixed_bytes(request: Request) -> Response:
    size = int(request.query_params.get("size", "1024"))
    return Response(payload(size), media_type="application/octet-stream", headers=UPSTREAM_HEADERS)


async def streamed_bytes(request: Request) -> Response:
    size = int(request.query_params.get("size", "1048576"))
    chunk = int(request.query_params.get("chunk", "65536"))
    delay = float(request.query_params.get("delay", "0"))
    data = payload(size)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, size, chunk):
            if start and delay:
                await anyio.sleep(delay)
            yield data[start : start + chunk]

    return StreamingResponse(pieces(), media_type="application/octet-stream", headers=UPSTREAM_HEADERS)


async def gzipped(request: Request) -> Response:
    body = gzip.compress(json.dumps(GZIP_JSON).encode(), mtime=0)
    headers = {"content-encoding": "gzip", "vary": "Accept-Encoding"}
    return Response(body, media_type="application/json", headers=headers)


async def redirect(request: Request) -> Response:
    return Response(status_code=302, headers={"location": "/raw/echo/redirected"})


async def sse(request: Request) -> Response:
    events = int(request.query_params.get("events", "5"))
    delay = float(request.query_params.get("delay", "0.2"))

    async def stream() -> AsyncIterator[bytes]:
        for number in range(events):
            if number:
                await anyio.sleep(delay)
            yield f"data: {{\"n\": {number}}}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def hop(request: Request) -> Response:
    headers = {"connection": "x-hop-only", "x-hop-only": "1", "keep-alive": "timeout=5",
               "proxy-authenticate": "Basic", "x-end-to-end": "1"}
    return Response(b"hop", media_type="text/plain", headers=headers)


def raw_routes() -> list[Route]:
    return [
        Route("/raw/echo/{path:path}", echo, methods=ALL_METHODS),
        Route("/raw/bytes", fixed_bytes, methods=["GET"]),
        Route("/raw/stream", streamed_bytes, methods=["GET"]),
        Route("/raw/gzip", gzipped, methods=["GET"]),
        Route("/raw/redirect", redirect, methods=["GET"]),
        Route("/raw/sse", sse, methods=["GET"]),
        Route("/raw/hop", hop, methods=["GET"]),
    ]
