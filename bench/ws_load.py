"""WebSocket load: `--connections` clients, each sending a `--size`-byte binary message and waiting for its echo,
over and over (closed loop) for `--seconds`; prints one JSON line: messages echoed, seconds, round-trip p50/p99.

    python bench/ws_load.py --url ws://127.0.0.1:9000/echo --connections 100 --seconds 4 [--header 'K: V']"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import uvloop
from websockets.asyncio.client import ClientConnection, connect


async def client(ws: ClientConnection, payload: bytes, stop: float, rtts: list[float]) -> None:
    now = time.perf_counter()
    while now < stop:
        await ws.send(payload)
        echoed = await ws.recv()
        assert len(echoed) == len(payload)
        sent, now = now, time.perf_counter()
        rtts.append(now - sent)


async def main(args: argparse.Namespace) -> None:
    headers = [tuple(part.strip() for part in header.split(":", 1)) for header in args.header]
    sockets = await asyncio.gather(*[connect(args.url, additional_headers=headers, compression=None, max_size=None,
                                             ping_interval=None, open_timeout=30)
                                     for _ in range(args.connections)])
    payload = os.urandom(args.size)
    for ws in sockets:  # warm-up: every connection once
        await ws.send(payload)
        await ws.recv()
    rtts: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*[client(ws, payload, started + args.seconds, rtts) for ws in sockets])
    elapsed = time.perf_counter() - started
    await asyncio.gather(*[ws.close() for ws in sockets])
    rtts.sort()
    print(json.dumps({"messages": len(rtts), "seconds": elapsed, "p50_ms": rtts[len(rtts) // 2] * 1000,
                      "p99_ms": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1000}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--header", action="append", default=[])
    uvloop.run(main(parser.parse_args()))
