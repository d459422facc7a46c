"""The bare WebSocket relay: a `websockets` server that opens one upstream connection per client (to
BENCH_UPSTREAM, ws://…, same path) and relays every message both ways, nothing else: no auth, no limits, no log.
What the least a Python WebSocket proxy does costs. `python bench/ws_bare_relay.py --port 9000`."""

from __future__ import annotations

import argparse
import asyncio
import os

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def pump(source: ServerConnection | ClientConnection, sink: ServerConnection | ClientConnection) -> None:
    try:
        async for message in source:
            await sink.send(message)
    except ConnectionClosed:
        pass


async def relay(client: ServerConnection, upstream_url: str) -> None:
    assert client.request is not None
    async with connect(upstream_url + client.request.path, compression=None, max_size=None,
                       ping_interval=None) as upstream:
        tasks = [asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


async def main(port: int) -> None:
    upstream = os.environ["BENCH_UPSTREAM"].replace("http://", "ws://")
    async with serve(lambda ws: relay(ws, upstream), "127.0.0.1", port, compression=None, max_size=None,
                     ping_interval=None, backlog=4096):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
