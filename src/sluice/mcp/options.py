"""The `mcp_servers:` config section and a key's `mcp` scope (pydantic models only: the config imports them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

SERVER_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""No underscore in a server name, so the first `__` of an aggregated tool name always ends it."""
RESERVED_SERVER_NAMES = frozenset({"project"})
"""`project__{project}__{route}` names the tools of the gateway's project routes (sluice/mcp/project_tools.py)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class McpOAuthConfig(_Strict):
    """OAuth 2.0 client credentials for an upstream: the gateway fetches a token at `token_url` (a form-encoded
    `client_credentials` grant), keeps it until shortly before it expires, sends it as `Authorization: Bearer`,
    and fetches a new one once when the upstream answers 401. Neither the secret nor a token is ever logged."""

    token_url: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = None
    """The `scope` parameter of the grant (space-separated), when the authorization server wants one."""
    audience: str | None = None
    """The `audience` parameter some authorization servers (Auth0, Okta) need to pick the resource."""
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    """How the client authenticates: id and secret in the form (`client_secret_post`) or HTTP Basic."""


class McpServerConfig(_Strict):
    """An upstream MCP server: over Streamable HTTP at `url`, with `headers` (its credentials) added to every request
    the gateway sends it; or over stdio, a `command` the gateway starts (with `args`, and `env` over a minimal
    environment: the gateway's own variables are not passed on). These are the only credentials it ever sees."""

    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = {}
    oauth: McpOAuthConfig | None = None
    """OAuth client credentials (a Streamable HTTP server only): the bearer token the gateway sends it."""
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
        if self.command is not None and (self.headers or self.oauth is not None):
            raise ValueError("'headers' and 'oauth' are for a Streamable HTTP server ('url'); a stdio server takes "
                             "'env'")
        if self.oauth is not None and any(name.lower() == "authorization" for name in self.headers):
            raise ValueError("give 'oauth' or an 'Authorization' header, not both: 'oauth' sets Authorization")
        return self


def _not_reserved(name: str) -> str:
    if name in RESERVED_SERVER_NAMES:
        raise ValueError(f"{name!r} is reserved: the gateway's project tools are named {name}__{{project}}__{{route}}")
    return name


McpServerName = Annotated[str, StringConstraints(pattern=SERVER_NAME), AfterValidator(_not_reserved)]
McpServers = dict[McpServerName, McpServerConfig]


class McpScope(_Strict):
    """Which upstream tools a key may use, by glob on `{server}__{tool}` (fnmatch, case-sensitive): a tool is
    permitted when an `allow` pattern matches it and no `deny` pattern does. `deny` also applies to the gateway's
    own tools (`list_models`, `chat`). Without this scope a key reaches the gateway's own tools only."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
