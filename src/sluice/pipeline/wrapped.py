"""A flow around an ASGI app that answers by itself (FastAPI's routes): the address limits and the caller checked
from the headers, then the body read within the limit and the timeout, the flow's headers on the app's response,
and, for a route whose exchange is observed, what it received and sent."""

from __future__ import annotations

from sluice.errors import GatewayError
from sluice.http.asgi import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    send_error,
    unreadable_body,
)
from sluice.http.duplicate_keys import duplicate_key, refusal
from sluice.pipeline.flow import Flow
from sluice.pipeline.gate import admit_before_body

FLOW_KEY = "sluice.flow"
"""Where the scope carries the request's flow, for the routes' dependencies (projects)."""


async def serve_wrapped(flow: Flow, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Let `app` answer the request of `flow`, once the caller is admitted (admin and project routes) and its body
    is read within the limit (413 past it, declared or sent: the app's own body parsing would turn a refusal raised
    mid-read into a 400) and the timeout (408), and its JSON has no key twice in one object (400)."""
    scope[FLOW_KEY] = flow
    try:
        try:
            await admit_before_body(flow, scope)
            body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
            kind = flow.headers.get(b"content-type")
            if body and (kind is None or b"json" in kind):  # what FastAPI reads as JSON
                duplicated = duplicate_key(body)
                if duplicated is not None:
                    raise refusal(duplicated)
        except GatewayError as error:
            flow.failed(error)
            await send_error(send, error, flow.response_headers(error=error))
            return
        except ClientDisconnected:
            flow.exchange.client_disconnected = True
            unreadable = unreadable_body()
            flow.failed(unreadable)
            await send_error(send, unreadable, flow.response_headers(error=unreadable))
            return
        flow.exchange.request_body = body
        await app(scope, _replaying(body, receive), stamped(flow, send))
    finally:
        flow.finish()


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` for an app whose request body was read already: the body first, then the client's messages
    (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_replayed() -> Message:
        return pending.pop() if pending else await receive()

    return receive_replayed


def stamped(flow: Flow, send: Send) -> Send:
    """`send` with the flow's headers added to the response's start (those the app did not set itself); the
    status and, for an observed exchange, the body noted on the exchange."""
    body: list[bytes] = []

    async def send_stamped(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            flow.exchange.status = message["status"]
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            headers += [header for header in flow.response_headers() if header[0] not in present]
            message = {**message, "headers": headers}
        elif kind == "http.response.body" and flow.observers:
            chunk = message.get("body", b"")
            if chunk:
                body.append(chunk)
            if not message.get("more_body", False):
                flow.exchange.response_body = b"".join(body)
        await send(message)

    return send_stamped
