"""A flow around an ASGI app that answers by itself (FastAPI's routes): the flow's headers on its response, the
body limit on its reads, and, for a route whose exchange is observed, what it received and sent."""

from __future__ import annotations

from sluice.http.asgi import ASGIApp, Message, Receive, Scope, Send, send_error, too_large
from sluice.pipeline.flow import Flow

FLOW_KEY = "sluice.flow"
"""Where the scope carries the request's flow, for the routes' dependencies (projects)."""


async def serve_wrapped(flow: Flow, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Let `app` answer the request of `flow`; a body declared or sent past the limit gets 413 (PayloadTooLarge
    raised from `receive`, which the app's error handlers answer)."""
    scope[FLOW_KEY] = flow
    try:
        declared = flow.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > flow.body_limit:
            error = too_large(flow.body_limit)
            flow.failed(error)
            await send_error(send, error, flow.response_headers(error=error))
            return
        await app(scope, _bounded(flow, receive), stamped(flow, send))
    finally:
        flow.finish()


def _bounded(flow: Flow, receive: Receive) -> Receive:
    limit = flow.body_limit
    size = 0

    async def receive_bounded() -> Message:
        nonlocal size
        message = await receive()
        body = message.get("body")
        if body:
            size += len(body)
            if size > limit:
                raise too_large(limit)
            if flow.observers:
                exchange = flow.exchange
                exchange.request_body = body if exchange.request_body is None else exchange.request_body + body
        return message

    return receive_bounded


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
