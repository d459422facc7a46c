"""The authenticated caller, as the policies and routes see it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sluice.errors import PermissionDenied
from sluice.limits.options import NO_LIMIT, Budget, RateLimit
from sluice.mcp.options import McpScope


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller identified by its key (or a JWT); a scope of None (`models`, `projects`, `providers`, `services`)
    means no limit.

    `limits` and `budget` are the ones in effect: the key's own, or the configured defaults.
    """

    key_id: str
    key_hash: str | None = None
    """The key's identifier derived with the pepper at authentication (HMAC-SHA256, hex; keys/hashing.py): what the
    request log stores. None for a caller without a key."""
    name: str | None = None
    models: frozenset[str] | None = None
    projects: frozenset[str] | None = None
    providers: frozenset[str] | None = None
    services: frozenset[str] | None = None
    """Services (`services:` in the config) this caller may reach through the service routes."""
    mcp: McpScope | None = None
    """Upstream MCP tools this caller may use (allow/deny globs, sluice/mcp/permissions.py); None, unlike the
    other scopes, means none of them: the gateway's own MCP tools only (fail closed)."""
    admin: bool = False
    projects_only: bool = False
    """True: the key reaches models and providers only through its projects (no `/v1` model, no `/provider/…`);
    a project's calls see the principal of `in_project()`, where the other scopes still apply."""
    limits: RateLimit = NO_LIMIT
    budget: Budget | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    jwt_subject: str | None = None
    """The `sub` claim of the JWT this caller presented (None for an API key)."""

    def may_use(self, model: str) -> bool:
        return not self.projects_only and (self.models is None or model in self.models)

    def check_provider(self, provider: str) -> None:
        """PermissionDenied (403) unless this key may reach `provider`."""
        if self.projects_only:
            raise PermissionDenied("This API key may only call projects (/projects/{name}/...), not providers "
                                   "directly.")
        if self.providers is not None and provider not in self.providers:
            raise PermissionDenied(f"This API key may not use provider {provider!r}.")

    def in_project(self) -> Principal:
        """The caller as the upstream calls of its project see it: `projects_only` lifted, other scopes kept."""
        return replace(self, projects_only=False) if self.projects_only else self

    def check_project(self, project: str) -> None:
        """PermissionDenied (403) unless this key may call project `project`."""
        if self.projects is not None and project not in self.projects:
            raise PermissionDenied(f"This API key may not call project {project!r}.")

    def check_service(self, service: str) -> None:
        """PermissionDenied (403) unless this key may reach service `service` (a `projects_only` key may not)."""
        if self.projects_only:
            raise PermissionDenied("This API key may only call projects (/projects/{name}/...), not services.")
        if self.services is not None and service not in self.services:
            raise PermissionDenied(f"This API key may not use service {service!r}.")


ANONYMOUS = Principal(key_id="anonymous")
