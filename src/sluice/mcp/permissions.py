"""Which tools a key may use: aggregated names (`{server}__{tool}`) and the key's `mcp` scope, failing closed."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from sluice.mcp.options import McpScope

SEPARATOR = "__"
"""Between server and tool in an aggregated name. MCP tool names may hold `A-Z a-z 0-9 _ - .` only (no `/` or
`:`); server names hold no `_`, so the first `__` always ends the server's part, whatever the tool is called."""


def prefixed(server: str, tool: str) -> str:
    """The name of upstream `server`'s `tool` at the aggregated `/mcp`."""
    return f"{server}{SEPARATOR}{tool}"


def split(name: str) -> tuple[str, str] | None:
    """(server, tool) of an aggregated upstream tool name; None for a name without a server part."""
    server, found, tool = name.partition(SEPARATOR)
    return (server, tool) if found and server and tool else None


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """A key's `mcp` scope applied: upstream tools need an `allow` match and no `deny` match; the gateway's own
    tools only need no `deny` match. No scope at all: no upstream tool."""

    scope: McpScope | None

    def permits_upstream(self, server: str, tool: str) -> bool:
        scope = self.scope
        if scope is None:
            return False
        name = prefixed(server, tool)
        return _matches(scope.allow, name) and not _matches(scope.deny, name)

    def permits_own(self, tool: str) -> bool:
        return self.scope is None or not _matches(self.scope.deny, tool)

    def refusal(self, name: str) -> str:
        """Why a call to `name` is refused, as the caller reads it in the tool's error result."""
        if self.scope is None:
            return (f"Tool {name!r} is not permitted for this API key: the key has no 'mcp' scope, so it may use "
                    "the gateway's own tools only.")
        return f"Tool {name!r} is not permitted for this API key by its 'mcp' scope (allow/deny lists)."


def _matches(patterns: tuple[str, ...], name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)
