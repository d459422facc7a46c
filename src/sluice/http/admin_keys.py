"""`/admin/keys`: create, list, show, update, revoke and rotate managed API keys (admin access only)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluice.db.errors import database_errors
from sluice.errors import InvalidRequest, ServiceUnavailable
from sluice.http.admin_audit import record
from sluice.http.admin_auth import AdminAccess, CurrentAdmin
from sluice.http.admin_inputs import MAX_ENTRIES, MAX_ENTRY_CHARS, BoundedKeyInput, clean_text, known_id
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit
from sluice.keys.records import CreatedKey, KeyRecord, KeySettings
from sluice.keys.scopes import check_settings, expiry
from sluice.limits.options import Budget, RateLimit
from sluice.mcp.options import McpScope

logger = logging.getLogger("sluice.http")
router = APIRouter(prefix="/admin/keys", tags=["admin: keys"], dependencies=[AddressLimit, AdminAccess])


class BoundedMcpScope(BaseModel):
    """The `mcp` scope's checks as an admin sends it: as many globs, as long, as the other scopes' names."""

    @field_validator("mcp", check_fields=False)
    @classmethod
    def _mcp(cls, value: McpScope | None) -> McpScope | None:
        if value is None:
            return None
        for patterns in (value.allow, value.deny):
            if len(patterns) > MAX_ENTRIES:
                raise ValueError(f"'allow' and 'deny' may list at most {MAX_ENTRIES} patterns each")
            for pattern in patterns:
                if not pattern or len(pattern) > MAX_ENTRY_CHARS:
                    raise ValueError(f"patterns are 1 to {MAX_ENTRY_CHARS} characters")
                clean_text(pattern)
        return value


class CreateKey(KeySettings, BoundedKeyInput, BoundedMcpScope):
    """A new key's settings; `expires_in_days` is another way to give `expires_at`."""

    expires_in_days: float | None = Field(None, gt=0)


class UpdateKey(BoundedKeyInput, BoundedMcpScope):
    """Only the fields sent change; null resets a scope (all), limits or budget (the defaults), or expiry (never)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    models: list[str] | None = None
    providers: list[str] | None = None
    projects: list[str] | None = None
    services: list[str] | None = None
    mcp: McpScope | None = None
    """Null removes the scope: the key then reaches the gateway's own MCP tools only."""
    admin: bool | None = None
    limits: RateLimit | None = None
    budget: Budget | None = None
    expires_at: datetime | None = None
    expires_in_days: float | None = Field(None, gt=0)
    metadata: dict[str, Any] | None = None


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float = Field(0.0, ge=0, le=30 * 86400)
    """How long the old key keeps working; 0 revokes it at once."""


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyRecord]


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except database_errors() as exc:
        logger.warning("admin keys: database operation failed: %s", exc)
        raise ServiceUnavailable("The API key store is unavailable; try again later.") from None


@router.post("", status_code=201, response_model=CreatedKey)
async def create_key(gateway: CurrentGateway, admin: CurrentAdmin, body: CreateKey) -> CreatedKey:
    """Create a key. The response carries the secret `key`: it is shown this once and never again."""
    settings = KeySettings.model_validate(body.model_dump(exclude={"expires_in_days", "expires_at"})
                                          | {"expires_at": expiry(body.expires_at, body.expires_in_days)})
    check_settings(settings, gateway.config)
    store = await gateway.keys.store()
    with _database_errors():
        created = await store.create(settings)
    logger.info("admin keys: created %s (%s, %s…)", created.id, created.name, created.prefix)
    await record(gateway, admin, "key.create", created.id, settings.model_dump())
    return created


@router.get("", response_model=KeyList)
async def list_keys(gateway: CurrentGateway, include_revoked: bool = False) -> KeyList:
    """Every key, newest first, without secrets; revoked keys only with `include_revoked=true`."""
    store = await gateway.keys.store()
    with _database_errors():
        return KeyList(data=await store.list(include_revoked=include_revoked))


@router.get("/{key_id}", response_model=KeyRecord)
async def get_key(gateway: CurrentGateway, key_id: str) -> KeyRecord:
    store = await gateway.keys.store()
    with _database_errors():
        return await store.get(known_id(key_id))


@router.patch("/{key_id}", response_model=KeyRecord)
async def update_key(gateway: CurrentGateway, admin: CurrentAdmin, key_id: str, body: UpdateKey) -> KeyRecord:
    """Change a key's name, scopes, limits, budget, metadata or expiry; the secret stays the same."""
    changes = {field: getattr(body, field) for field in body.model_fields_set if field != "expires_in_days"}
    if "expires_in_days" in body.model_fields_set or "expires_at" in changes:
        changes["expires_at"] = expiry(body.expires_at, body.expires_in_days)
    for field in ("name", "admin", "metadata"):
        if field in changes and changes[field] is None:
            raise InvalidRequest(f"Invalid value for '{field}': may not be null.", param=field)
    store = await gateway.keys.store()
    with _database_errors():
        current = await store.get(known_id(key_id))
        settings = KeySettings.model_validate(current.model_dump(include=set(KeySettings.model_fields)) | changes)
        # An update that leaves the expiry alone may keep one already past (the key is expired either way).
        check_settings(settings if "expires_at" in changes else settings.model_copy(update={"expires_at": None}),
                       gateway.config)
        updated = await store.update(key_id, settings)
    gateway.keys.forget()
    logger.info("admin keys: updated %s (%s)", key_id, ", ".join(sorted(changes)))
    await record(gateway, admin, "key.update", key_id, changes)
    return updated


@router.post("/{key_id}/revoke", response_model=KeyRecord)
async def revoke_key(gateway: CurrentGateway, admin: CurrentAdmin, key_id: str) -> KeyRecord:
    """Revoke a key: this instance refuses it at once, every other one within `keys.cache_ttl_seconds`."""
    store = await gateway.keys.store()
    with _database_errors():
        revoked = await store.revoke(known_id(key_id))
    gateway.keys.forget()
    logger.info("admin keys: revoked %s", key_id)
    await record(gateway, admin, "key.revoke", key_id, {"revoked_at": revoked.revoked_at})
    return revoked


@router.post("/{key_id}/rotate", status_code=201, response_model=CreatedKey)
async def rotate_key(gateway: CurrentGateway, admin: CurrentAdmin, key_id: str,
                     body: Annotated[RotateKey | None, Body()] = None) -> CreatedKey:
    """A new secret with the same settings (new id); the old key stops working now or after `grace_seconds`."""
    grace = body.grace_seconds if body is not None else 0.0
    store = await gateway.keys.store()
    with _database_errors():
        created = await store.rotate(known_id(key_id), grace)
    gateway.keys.forget()
    logger.info("admin keys: rotated %s into %s (grace %g s)", key_id, created.id, grace)
    await record(gateway, admin, "key.rotate", key_id, {"replaced_by": created.id, "grace_seconds": grace})
    return created

