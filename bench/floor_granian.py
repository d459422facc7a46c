"""The floor: granian + a raw ASGI app relaying every request to BENCH_UPSTREAM with one pooled aiohttp session.

No parsing, no auth, no routing: the least a Python proxy can do. `python bench/floor_granian.py --port 9000`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import aiohttp

Scope = dict[str, Any]
Message = dict[str, Any]


class Floor:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        body, more = b"", True
        while more:
            message: Message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        assert self.session is not None
        async with self.session.request(scope["method"], self.upstream + scope["path"], data=body,
                                        headers={"Content-Type": "application/json"}) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/json").encode()
            headers = [(b"content-type", content_type)]
            if not content_type.startswith(b"text/event-stream"):
                data = await upstream.read()
                headers.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def app() -> Floor:
    return Floor(os.environ["BENCH_UPSTREAM"])


if __name__ == "__main__":
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Sluice's listen queue and per-worker concurrency (sluice/serve/limits.py): granian's default, 1,024 each,
    # leaves half of the slow scenario's 2,000 connections waiting.
    Server("floor_granian:app", address="127.0.0.1", port=args.port, workers=args.workers, factory=True,
           interface=Interfaces.ASGI, loop=Loops.uvloop, log_access=False, working_dir=Path(__file__).parent,
           backlog=4096, backpressure=4096).serve()
