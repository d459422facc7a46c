"""How a flow's outcome leaves: the edge's work run to the end, errors in the caller's protocol, streams relayed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from sluice.errors import GatewayError, internal_error
from sluice.http.asgi import ClientDisconnected, Message, Send, send_error, unreadable_body
from sluice.pipeline.client_watch import ClientWatch
from sluice.pipeline.flow import Flow, Headers
from sluice.pipeline.stream_cutoff import StreamCutoff, shutting_down
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
    `render`, with the flow's headers; a caller that left (its upstream wait cancelled, see `Flow.watch_client`)
    gets nothing more; the flow finishes whatever happened."""
    try:
        await work()
    except asyncio.CancelledError:
        client = flow.client
        task = asyncio.current_task()
        if client is None or not client.gone or task is None or task.cancelling() > 1:
            raise
        task.uncancel()
        flow.abandoned()
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


async def relay(chunks: AsyncGenerator[bytes, None], client: ClientWatch, send: Send,
                ending: Ending | None = sse_error_ending, start: Message | None = None,
                cutoff: StreamCutoff | None = None, shape: Callable[[bytes], bytes] | None = None,
                last: Callable[[], Awaitable[bytes]] | None = None) -> None:
    """Send each chunk as it arrives; a client that leaves cancels the upstream (`client`, the flow's watch: the
    cancellation reaches `serve`). A broken upstream ends the stream with `ending(tail, error)` (an SSE error event
    by default), or, if `ending` is None, raises Aborted, so the client sees a truncated body rather than a
    complete one. `start` (the response's start message) waits for the first chunk: a failure before it is
    raised, to be answered as an error response (a 502, not a broken 200). A worker stopping (`cutoff`) ends the
    stream the same way, with a 503 `server_shutting_down`. `shape` turns each chunk into what is sent (an empty
    result is skipped) and `last` gives the bytes that end a whole stream: a front door's translation, run here
    rather than in a generator of its own, which every chunk would pass through."""
    client.arm()
    task = cutoff.opened() if cutoff is not None else None
    tail = b"\n\n"
    ended = b""
    try:
        async for chunk in chunks:
            if shape is not None:
                chunk = shape(chunk)
                if not chunk:
                    continue
            if start is not None:
                await send(start)
                start = None
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tail = chunk[-2:] or tail
        if last is not None:
            ended = await last()
    except asyncio.CancelledError:
        if cutoff is None or not cutoff.cut or client.gone or task is None or task.cancelling() > 1:
            raise
        task.uncancel()
        stopped = shutting_down()
        if start is not None:
            raise stopped from None
        if ending is None:
            raise Aborted(stopped.message) from None
        ended = ending(tail, stopped)
    except GatewayError as exc:
        if start is not None:
            raise
        if ending is None:
            raise Aborted(exc.message) from exc
        ended = ending(tail, exc)
    except Exception as exc:
        if start is not None:
            raise
        logger.exception("stream relay failed")
        if ending is None:
            raise Aborted(str(exc)) from exc
        ended = ending(tail, internal_error())
    finally:
        client.disarm()
        if cutoff is not None:
            cutoff.closed(task)
        await chunks.aclose()
    if start is not None:
        await send(start)
    await send({"type": "http.response.body", "body": ended, "more_body": False})
