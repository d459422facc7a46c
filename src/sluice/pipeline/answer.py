"""How a flow's outcome leaves: the edge's work run to the end, errors in the caller's protocol, streams relayed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from sluice.errors import GatewayError, internal_error
from sluice.http.asgi import ClientDisconnected, Message, Receive, Send, send_error, unreadable_body
from sluice.pipeline.flow import Flow, Headers
from sluice.streaming import error_event

logger = logging.getLogger("sluice.http")

Ending = Callable[[bytes, GatewayError], bytes]
"""What ends a stream broken by `error`, given the last bytes sent (`tail`)."""
RenderError = Callable[[Send, GatewayError, Headers], Awaitable[None]]
"""An error response in the caller's protocol (OpenAI-shaped by default)."""


class Aborted(Exception):
    """A reply broke after its status was sent: the server must abort the response, not complete it."""


async def serve(flow: Flow, send: Send, work: Callable[[], Awaitable[None]], render: RenderError = send_error
                ) -> None:
    """Run an edge's `work` for `flow`; a GatewayError (or a bug) before the response started is answered with
    `render`, with the flow's headers; the flow finishes whatever happened."""
    try:
        await work()
    except GatewayError as exc:
        flow.failed(exc)
        await render(send, exc, flow.response_headers(error=exc))
    except ClientDisconnected:
        flow.exchange.client_disconnected = True
        unreadable = unreadable_body()
        flow.failed(unreadable)
        await render(send, unreadable, flow.response_headers(error=unreadable))
    except Aborted:
        raise
    except Exception:
        logger.exception("unhandled error on %s", flow.exchange.endpoint)
        error = internal_error()
        flow.failed(error)
        await render(send, error, flow.response_headers(error=error))
    finally:
        flow.finish()


def sse_error_ending(tail: bytes, error: GatewayError) -> bytes:
    """The SSE error event that ends a broken stream, after a separator if `tail` left an event half-sent."""
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + error_event(error)


async def relay(chunks: AsyncGenerator[bytes, None], receive: Receive, send: Send,
                ending: Ending | None = sse_error_ending, start: Message | None = None) -> None:
    """Send each chunk as it arrives; a client that leaves cancels the upstream. A broken upstream ends the stream
    with `ending(tail, error)` (an SSE error event by default), or, if `ending` is None, raises Aborted, so the
    client sees a truncated body rather than a complete one. `start` (the response's start message) waits for the
    first chunk: a failure before it is raised, to be answered as an error response (a 502, not a broken 200)."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()
    watcher = asyncio.create_task(_cancel_on_disconnect(receive, task, gone))
    tail = b"\n\n"
    try:
        async for chunk in chunks:
            if start is not None:
                await send(start)
                start = None
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tail = chunk[-2:] or tail
    except GatewayError as exc:
        if start is not None:
            raise
        if ending is None:
            raise Aborted(exc.message) from exc
        last = ending(tail, exc)
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        task.uncancel()
        return
    except Exception as exc:
        if start is not None:
            raise
        logger.exception("stream relay failed")
        if ending is None:
            raise Aborted(str(exc)) from exc
        last = ending(tail, internal_error())
    else:
        last = b""
    finally:
        watcher.cancel()
        await chunks.aclose()
    if start is not None:
        await send(start)
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[None], gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            task.cancel()
            return
