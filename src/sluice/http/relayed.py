"""A reply without a `Content-Length` (chunked) that ends with its first chunk, told apart from a real stream, so
the edges that relay replies as they came (services, provider passthrough) can send it in one message.

Relaying chunk by chunk costs a disconnect watcher, a generator per layer, a message and a write per chunk: on the
benchmark's chunked JSON replies a service request cost ~1.8× a chat request, which reads its reply whole
(docs/benchmarks.md, "Service routes: proxying"). So the first chunk is read before the status is sent, and the
read of the next one is polled at once (~93 % of the benchmark's replies have said they ended by then, with no task
made), else given one turn of the event loop (~97 % by then; otherwise the reply is relayed as before, which answers
the same bytes). Event streams and NDJSON are relayed at once, so their headers are never held back waiting for a
first event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from pyreqwest.bytes import Bytes
from pyreqwest.exceptions import RequestError

from sluice.http.asgi import Receive, Send
from sluice.pipeline.answer import relay
from sluice.pipeline.flow import Flow, Headers
from sluice.providers.upstream import OpenStream, transport_error

STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl", "multipart/")
"""Content types relayed from their first byte: what clients read as it comes."""


def is_stream(reply: OpenStream) -> bool:
    content_type = reply.response.get_header("content-type")
    return content_type is not None and content_type.lower().startswith(STREAM_TYPES)


async def opening(reply: OpenStream, upstream: str) -> tuple[bytes, asyncio.Future[Bytes | None] | None]:
    """The reply's first chunk, and the pending read of the next one; (whole body, None) when the body ended with
    its first chunk (the reply is then released)."""
    reader = reply.response.body_reader
    following: asyncio.Future[Bytes | None] | None = None
    try:
        first = await reader.read_chunk()
        if first is None:
            await reply.close()
            return b"", None
        following = _next_read(reader.read_chunk())
        if following is None:
            await reply.close()
            return bytes(first), None
        if not following.done():
            await asyncio.sleep(0)  # one turn: the end of a body already received completes the read by now
            if following.done() and following.exception() is None and following.result() is None:
                await reply.close()
                return bytes(first), None
    except RequestError as exc:
        await reply.close()
        raise transport_error(exc, upstream) from exc
    except BaseException:
        if following is not None and not following.done():
            following.cancel()
        await reply.close()
        raise
    return bytes(first), following


def _next_read(read: Coroutine[Any, Any, Bytes | None]) -> asyncio.Future[Bytes | None] | None:
    """The read of the next chunk, polled once here: None when it found the body's end at once (most replies that
    ended with their first chunk; no task made), else the read as a future (done if a chunk was there)."""
    try:
        read.send(None)
    except StopIteration as ended:
        if ended.value is None:
            return None
        chunk: asyncio.Future[Bytes | None] = asyncio.get_running_loop().create_future()
        chunk.set_result(ended.value)
        return chunk
    except BaseException:
        read.close()
        raise
    # Still waiting: the task polls it again (with its own waker), so what this poll yielded is not needed.
    return asyncio.ensure_future(read)


async def rest(reply: OpenStream, upstream: str, first: bytes, following: asyncio.Future[Bytes | None]
               ) -> AsyncGenerator[bytes, None]:
    """The whole body as it arrives, `first` and the pending read included, then the reply released; closing
    early cancels the pending read and aborts the request."""
    reader = reply.response.body_reader
    try:
        yield first
        try:
            chunk = await following
            while chunk is not None:
                yield bytes(chunk)
                chunk = await reader.read_chunk()
        except RequestError as exc:
            raise transport_error(exc, upstream) from exc
    finally:
        if not following.done():
            following.cancel()
        await reply.close()


async def relay_reply(flow: Flow, reply: OpenStream, headers: Headers, chunks: AsyncGenerator[bytes, None],
                      receive: Receive, send: Send, following: asyncio.Future[Bytes | None] | None = None) -> None:
    """The reply's status and `headers`, then `chunks` (its body) relayed as they come, kept on the exchange; a
    broken upstream aborts the response. `following`: the pending read `chunks` holds, if any."""
    try:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    except BaseException:  # `chunks` never started, so its own `finally` will not release the reply
        if following is not None:
            following.cancel()
        await reply.close()
        raise
    await relay(flow.relayed(chunks), flow.client or flow.watch_client(receive), send, ending=None,
                cutoff=flow.gateway.streams)
