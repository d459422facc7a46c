"""Raw ASGI helpers for the hot routes: request headers, bounded body reading, JSON responses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sluice.errors import GatewayError, InvalidRequest, PayloadTooLarge
from sluice.http.body_clock import BodyClock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")


class ClientDisconnected(Exception):
    """The client went away before its request body arrived, or the server gave up on the body (granian says
    `http.disconnect` for a malformed chunked encoding too)."""


def unreadable_body() -> InvalidRequest:
    """The answer to a body read that ended in `ClientDisconnected`: nobody reads it when the client is gone, and a
    client whose body the server could not parse gets a JSON 400 instead of the server's plain-text 500."""
    error = InvalidRequest("The request body could not be read: it ended before it was complete, or its chunked "
                           "encoding is malformed.", code="unreadable_body")
    error.headers = {"Connection": "close"}
    return error


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers by lower-case name (the last value wins, as in Starlette's `Headers.get`)."""
    return dict(scope["headers"])


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int, clock: BodyClock | None = None
                    ) -> bytes:
    """The whole request body, refusing more than `limit` bytes before reading them where it can, and, with a
    `clock`, a body that has not arrived within its timeout (RequestTimeout, 408)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    if clock is None or declared == b"0":
        return await _read(receive, limit)
    task = clock.start()
    try:
        return await _read(receive, limit)
    except asyncio.CancelledError:
        if clock.timed_out(task):
            raise clock.refusal() from None
        raise
    finally:
        clock.stop(task)


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than this gateway accepts ({limit} bytes).")


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete response in two ASGI messages."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError, headers: list[tuple[bytes, bytes]]) -> None:
    """The OpenAI-shaped error response for `error`."""
    body = error.to_json()
    extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    await send_bytes(send, error.status, body,
                     [JSON_TYPE, (b"content-length", str(len(body)).encode()), *headers, *extra])
