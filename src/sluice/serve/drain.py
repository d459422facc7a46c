"""A worker's way out at a reload: on SIGUSR1 it stops accepting connections and closes each one after its next
response, so no client sends a request on a connection the worker is closing.

granian's own graceful stop (SIGTERM) finishes the requests in flight, then closes every HTTP/1.1 connection at
once; a keep-alive client whose stream just ended sends its next request on that connection and gets
"Server disconnected". Draining first leaves nothing for that race: the worker takes its listening socket out of
its event loop's epoll sets (the supervisor's new workers accept from the same socket), answers each request on
its open connections with `Connection: close`, and is told to stop (SIGTERM) once it holds no connection.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]  # as http/asgi.py has them; the supervisor imports this module, not that one
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("sluice.serve")

DRAIN_SIGNAL = signal.SIGUSR1
_WATCHED = re.compile(r"^tfd:\s+(\d+)\s+events:\s+\S+\s+data:\s+\S+\s+pos:\S+\s+ino:([0-9a-f]+)", re.MULTILINE)


class Draining:
    """The worker's ASGI app, which can be told to drain (~0.3 us a request until then), and which tells the idle
    reaper which client connections have a request in the app (`in_app`, their peers' addresses)."""

    def __init__(self, app: ASGIApp, listener_inode: int, in_app: set[Any] | None = None) -> None:
        self.app = app
        self.listener_inode = listener_inode
        self.draining = False
        self.in_app = in_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.draining and scope["type"] == "http" and scope.get("http_version") in ("1.0", "1.1"):
            send = _closing(send)
        in_app = self.in_app
        peer = scope.get("client")
        if in_app is None or peer is None:
            await self.app(scope, receive, send)
            return
        in_app.add(peer)
        try:
            await self.app(scope, receive, send)
        finally:
            in_app.discard(peer)

    def drain(self) -> None:
        """Accept no more connections; close each open one after its next response."""
        if self.draining:
            return
        self.draining = True
        ending = getattr(self.app, "drain", None)
        if callable(ending):
            ending()  # the app's long-lived connections (WebSockets) end now rather than hold the worker
        removed = stop_polling(self.listener_inode)
        logger.info("worker PID %s drains: no new connections (%s epoll registrations removed), each open one "
                    "closes after its next response", os.getpid(), removed)


def _closing(send: Send) -> Send:
    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return send_closing


def stop_polling(inode: int) -> int:
    """Remove the file with this inode from every epoll set of this process; how many registrations went."""
    removed = 0
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{descriptor}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{descriptor}", encoding="ascii") as info:
                watched = _WATCHED.findall(info.read())
        except OSError:
            continue
        for target, found in watched:
            if int(found, 16) != inode:
                continue
            epoll = select.epoll.fromfd(os.dup(int(descriptor)))  # its own descriptor: closing it keeps the set
            try:
                epoll.unregister(int(target))
                removed += 1
            except OSError:
                pass
            finally:
                epoll.close()
    return removed


def load_app(target: str, *, listener_inode: int) -> Draining:
    """granian's target loader in a worker: the app factory's app, drained on SIGUSR1 (on the worker's loop,
    which granian created and set before loading the app)."""
    import asyncio

    from granian._internal import load_target

    from sluice.serve.idle_reaper import start_from_env

    app: Any = load_target(target, factory=True)
    in_app: set[Any] = set()
    # connections that never send a byte, which granian would hold for ever, and the pending ones past the budget
    reaper = start_from_env(in_app)
    draining = Draining(app, listener_inode, in_app if reaper is not None else None)
    asyncio.get_event_loop_policy().get_event_loop().add_signal_handler(DRAIN_SIGNAL, draining.drain)
    return draining
