"""Who is calling the MCP request being served: set by the edge, read by the server's handlers (a ContextVar)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from sluice.http.asgi import Scope
from sluice.keys.principal import Principal
from sluice.mcp.permissions import ToolPolicy
from sluice.pipeline.flow import Flow


@dataclass(slots=True)
class Caller:
    """The edge's flow of one MCP HTTP request, its authenticated key, and what that key may use there.

    `server` is the upstream of `/mcp/{server}`, None at the aggregated `/mcp`; `instructions` is what an
    `initialize` answers with (the edge works it out before the SDK's session does); `scope` is the HTTP request's
    ASGI scope (its headers and client address: what a project tool's internal request carries on)."""

    flow: Flow
    principal: Principal
    policy: ToolPolicy
    server: str | None
    instructions: str | None = None
    scope: Scope = field(default_factory=dict)


_current: ContextVar[Caller | None] = ContextVar("sluice_mcp_caller", default=None)
"""The SDK serves each request in a task its session manager starts from the request's task: asyncio copies the
request's context into it, so the handlers see the value the edge set."""


def enter(caller: Caller) -> Token[Caller | None]:
    return _current.set(caller)


def leave(token: Token[Caller | None]) -> None:
    _current.reset(token)


def current() -> Caller | None:
    return _current.get()


def required() -> Caller:
    """The caller of the request being served; a handler running outside the edge is a bug."""
    caller = _current.get()
    if caller is None:
        raise RuntimeError("an MCP handler ran outside the /mcp edge (no caller)")
    return caller
