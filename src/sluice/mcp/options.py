"""The `mcp_servers:` config section and a key's `mcp` scope (pydantic models only: the config imports them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SERVER_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""No underscore in a server name, so the first `__` of an aggregated tool name always ends it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class McpServerConfig(_Strict):
    """An upstream MCP server: over Streamable HTTP at `url`, with `headers` (its credentials) added to every request
    the gateway sends it; or over stdio, a `command` the gateway starts (with `args`, and `env` over a minimal
    environment: the gateway's own variables are not passed on). These are the only credentials it ever sees."""

    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = {}
    command: str | None = Field(None, min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """The most one listing or one tool call may take, connection and session set-up included."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.url is None) == (self.command is None):
            raise ValueError("give either 'url' (Streamable HTTP) or 'command' (stdio), not both or neither")
        if self.url is not None and (self.args or self.env):
            raise ValueError("'args' and 'env' are for a stdio server ('command'); a 'url' server takes 'headers'")
        if self.command is not None and self.headers:
            raise ValueError("'headers' are for a Streamable HTTP server ('url'); a stdio server takes 'env'")
        return self


McpServerName = Annotated[str, StringConstraints(pattern=SERVER_NAME)]
McpServers = dict[McpServerName, McpServerConfig]


class McpScope(_Strict):
    """Which upstream tools a key may use, by glob on `{server}__{tool}` (fnmatch, case-sensitive): a tool is
    permitted when an `allow` pattern matches it and no `deny` pattern does. `deny` also applies to the gateway's
    own tools (`list_models`, `chat`). Without this scope a key reaches the gateway's own tools only."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
