"""Whether a request's client has left, noticed while the gateway waits on its upstream, which is then cancelled.

Once a request's body is read, the server's next `receive()` resolves when the client disconnects. Under granian
that is a future of its own (`PyFutureAwaitable`): a done-callback on it costs no task, so every request can be
watched (~1 µs), not only streams. Other servers return a coroutine, run here as a task. granian also resolves
it with `http.disconnect` once the response is complete, so the watch cancels only while `armed`: around the
waits on the upstream (the call, the stream's relay), never around the response's last message.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.http.asgi import Receive


class ClientWatch:
    """The one pending `receive()` of a request whose body was read, and the task a disconnect cancels."""

    __slots__ = ("gone", "_armed", "_own")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        """The client left while the watch was armed (its task was cancelled for that)."""
        self._armed: asyncio.Task[Any] | None = None
        waiter: Any = receive()
        self._own: asyncio.Future[Any] | None = None
        if not asyncio.isfuture(waiter):  # a coroutine: a task of our own, cancelled at `close`
            waiter = self._own = asyncio.ensure_future(waiter)
        # granian's future is not kept here: it holds this watch (its callback), and a cycle through it is never
        # collected (its type is not tracked by the garbage collector): ~1 kB a request stayed behind.
        waiter.add_done_callback(self._left)

    def arm(self) -> None:
        """A disconnect from now on cancels the current task (until `disarm`)."""
        self._armed = asyncio.current_task()

    def disarm(self) -> None:
        self._armed = None

    def close(self) -> None:
        """The request is over: nothing to watch any longer."""
        self._armed = None
        own, self._own = self._own, None
        if own is not None and not own.done():
            own.cancel()

    def _left(self, waiter: asyncio.Future[Any]) -> None:
        task = self._armed
        if task is None or waiter.cancelled() or waiter.exception() is not None:
            return
        message = waiter.result()
        if message.get("type") == "http.disconnect":
            self._armed = None
            self.gone = True
            task.cancel()
