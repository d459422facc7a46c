"""Second floor: an aiohttp server relaying every request to BENCH_UPSTREAM with one pooled aiohttp session.

`python bench/floor_aiohttp.py --port 9001`."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    async with session.request(request.method, request.app[UPSTREAM] + request.path, data=body,
                               headers={"Content-Type": "application/json"}) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(body=await upstream.read(), status=upstream.status,
                                headers={"Content-Type": content_type})
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": content_type})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def client(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def build(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.set_event_loop(uvloop.new_event_loop())
    web.run_app(build(os.environ["BENCH_UPSTREAM"]), host="127.0.0.1", port=args.port, access_log=None,
                print=None, loop=asyncio.get_event_loop())
