"""A WebSocket service on loopback for the gateway's WebSocket routes (the `websockets` library, in a thread)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.servers import free_port


class WebSocketService:
    """A WebSocket server on loopback, in a thread of its own. By path: `/echo…` sends every message back as it
    came (and, for `big`, a 2,000-byte reply); `/close` closes with 4001 "done here" on any message; `/watch`
    keeps what it gets (`got`) until the client closes. Each connection's path, headers, subprotocol, the close
    it received (code, reason) are put on `seen`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        entry: dict[str, Any] = {"path": path, "headers": {k.lower(): v for k, v in ws.request.headers.raw_items()},
                                 "subprotocol": ws.subprotocol}
        try:
            if path.startswith("/close"):
                await ws.recv()
                await ws.close(4001, "done here")
            elif path.startswith("/watch"):
                got = entry["got"] = []
                async for message in ws:
                    got.append(message)
            else:
                async for message in ws:
                    await ws.send(message)
                    if message == "big":
                        await ws.send("x" * 2000)
        except ConnectionClosed:
            pass
        finally:
            entry["close"] = (ws.close_code, ws.close_reason)
            self.seen.put(entry)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with ws_serve(self._handler, "127.0.0.1", self.port, select_subprotocol=_chat_or_none, max_size=None):
            self._ready.set()
            await self._stop

    def __enter__(self) -> WebSocketService:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


def _chat_or_none(ws: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """The first of the client's subprotocols this service speaks (`chat.v1`, `chat.v2`), or none."""
    return next((Subprotocol(name) for name in offered if name in ("chat.v1", "chat.v2")), None)
