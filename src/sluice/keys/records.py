"""A managed key's settings and record as the admin API and the CLI see them, and the Principal it stands for."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice.keys.principal import Principal
from sluice.limits.options import Budget, Limits, RateLimit
from sluice.mcp.options import McpScope

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

KeyStatus = Literal["active", "expired", "revoked"]


class KeySettings(BaseModel):
    """Everything about a key but its secret: the part a rotation copies and an update changes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    models: list[str] | None = None
    """Public model names (or aliases) the key may use; null means every model."""
    providers: list[str] | None = None
    """Providers the key may reach; null means every provider."""
    projects: list[str] | None = None
    """Projects the key may call; null means every project."""
    services: list[str] | None = None
    """Services (the config's `services:`) the key may reach; null means every service."""
    mcp: McpScope | None = None
    """Upstream MCP tools the key may use (allow/deny globs on `{server}__{tool}`, docs/mcp.md); null, unlike the
    other scopes, means none: the gateway's own MCP tools only (fail closed)."""
    admin: bool = False
    """May use the /admin API (keys, logs, usage)."""
    limits: RateLimit | None = None
    """Null means the config's `limits.default_key`."""
    budget: Budget | None = None
    """Null means the config's `limits.default_budget`."""
    expires_at: datetime | None = None
    metadata: dict[str, Any] = {}


class KeyRecord(KeySettings):
    """A stored key, never with its secret."""

    object: Literal["api_key"] = "api_key"
    id: str
    prefix: str
    """The first characters of the key, for recognition (`sk-sluice-ab12`)."""
    status: KeyStatus
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = None
    """When the key stops working; in the future while a rotated key's grace period runs."""
    replaced_by: str | None = None


class CreatedKey(KeyRecord):
    """A record with its secret: returned once, by creation and rotation."""

    key: str


def status_of(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> KeyStatus:
    if revoked_at is not None and revoked_at <= now:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def settings_columns(settings: KeySettings) -> dict[str, Any]:
    """The api_keys columns for `settings`."""
    return {
        "name": settings.name,
        "scopes": {"models": settings.models, "providers": settings.providers, "projects": settings.projects,
                   "services": settings.services, "admin": settings.admin,
                   "mcp": None if settings.mcp is None else settings.mcp.model_dump(mode="json")},
        "limits": None if settings.limits is None else settings.limits.model_dump(exclude_none=True),
        "budget": None if settings.budget is None else settings.budget.model_dump(),
        "expires_at": settings.expires_at,
        "metadata": settings.metadata,
    }


def settings_of(row: Mapping[str, Any] | RowMapping) -> KeySettings:
    scopes = row["scopes"] or {}
    return KeySettings(
        name=row["name"], models=scopes.get("models"), providers=scopes.get("providers"),
        projects=scopes.get("projects"), services=scopes.get("services"), admin=bool(scopes.get("admin", False)),
        mcp=None if scopes.get("mcp") is None else McpScope.model_validate(scopes["mcp"]),
        limits=None if row["limits"] is None else RateLimit.model_validate(row["limits"]),
        budget=None if row["budget"] is None else Budget.model_validate(row["budget"]),
        expires_at=row["expires_at"], metadata=row["metadata"] or {},
    )


def record_of(row: Mapping[str, Any] | RowMapping, now: datetime | None = None) -> KeyRecord:
    settings = settings_of(row)
    return KeyRecord(
        **settings.model_dump(), id=row["id"], prefix=row["prefix"],
        status=status_of(row["expires_at"], row["revoked_at"], now or datetime.now(UTC)),
        created_at=row["created_at"], updated_at=row["updated_at"], revoked_at=row["revoked_at"],
        replaced_by=row["replaced_by"],
    )


def principal_of(record: KeyRecord, defaults: Limits, key_hash: str | None = None) -> Principal:
    """The caller a managed key stands for, with the limits and budget in effect; `key_hash` is the peppered hash
    it was found by."""
    return Principal(
        key_id=record.id,
        key_hash=key_hash,
        name=record.name,
        models=None if record.models is None else frozenset(record.models),
        projects=None if record.projects is None else frozenset(record.projects),
        providers=None if record.providers is None else frozenset(record.providers),
        services=None if record.services is None else frozenset(record.services),
        mcp=record.mcp,
        admin=record.admin,
        limits=record.limits or defaults.default_key,
        budget=record.budget or defaults.default_budget,
        metadata=record.metadata,
    )
