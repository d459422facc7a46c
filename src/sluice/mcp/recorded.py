"""One MCP tool call as an exchange of its own (operation `mcp`): a request-log row and a span, via a child flow."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import time
from typing import Any

import orjson
from mcp import types

from sluice.errors import GatewayError, internal_error
from sluice.exchange import Exchange
from sluice.json_bytes import dumps_to_size
from sluice.pipeline.flow import Flow

logger = logging.getLogger("sluice.mcp")

OPERATION = "mcp"
GATEWAY_SERVER = "sluice"
"""The `provider` of a call to one of the gateway's own tools."""

Run = Callable[[Flow], Awaitable[types.CallToolResult]]


def error_result(message: str) -> types.CallToolResult:
    """A tool's error as MCP reports it: a result with `isError`, its text what went wrong."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)


def tool_flow(parent: Flow, server: str, tool: str) -> Flow:
    """The child flow of one tool call: the edge request's id, trace (a child span) and headers (the request log
    redacts the secret ones); provider = the server, model = the tool as the server names it."""
    edge = parent.exchange
    exchange = Exchange(request_id=edge.request_id, endpoint=edge.endpoint, method="POST", started_at=time(),
                        operation=OPERATION, key_id=edge.key_id, principal=parent.principal, provider=server,
                        model=tool, request_headers=edge.request_headers)
    exchange.key_hash = edge.key_hash
    if edge.trace is not None:
        exchange.trace = edge.trace.child()
        exchange.trace_id = edge.trace_id
    flow = Flow(parent.gateway, {}, exchange, parent.request_id, observers=parent.gateway.observers, counted=False,
                parent=parent)
    flow.principal = parent.principal
    return flow


async def recorded(parent: Flow, server: str, tool: str, arguments: dict[str, Any], run: Run
                   ) -> types.CallToolResult:
    """`run` the call on its own flow and hand the exchange to the observers: the arguments as the request body,
    the result (at most `request_log.max_body_bytes` of it) as the response, the status and any error."""
    flow = tool_flow(parent, server, tool)
    exchange = flow.exchange
    exchange.request_body = dumps_to_size(arguments)
    started = flow.upstream_started()
    try:
        result = await run(flow)
    except GatewayError as exc:
        flow.failed(exc)
        result = error_result(exc.message)
    except Exception:
        logger.exception("MCP tool %s of %s failed", tool, server)
        error = internal_error()
        flow.failed(error)
        result = error_result(error.message)
    else:
        exchange.status = 200
        if result.isError:
            exchange.error, exchange.error_type = _text_of(result)[:1000] or "tool error", "tool_error"
    finally:
        flow.upstream_done(started)
    exchange.response_body = bounded(result, parent.gateway.config.request_log.max_body_bytes)
    flow.finish()
    return result


def bounded(result: types.CallToolResult, limit: int) -> bytes:
    """The result as JSON, cut to `limit` bytes with a note of its full size past that (the log keeps no more)."""
    raw = orjson.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))
    if len(raw) <= limit:
        return raw
    return raw[:limit] + f"... [truncated: the result has {len(raw)} bytes]".encode()


def _text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))
