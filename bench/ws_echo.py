"""The WebSocket benchmark's upstream: a loopback echo server (the `websockets` library on uvloop) sending every
message back as it came. `python bench/ws_echo.py --port 9000`."""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None, backlog=4096):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
