"""The admin API's audit trail: `record` for every change (keys, service instances, prompts), `GET /admin/audit`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel

from sluice.db.errors import database_errors
from sluice.errors import GatewayError, InvalidRequest
from sluice.gateway import Gateway
from sluice.http.admin_auth import AdminAccess
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit
from sluice.keys.principal import Principal
from sluice.pipeline.gate import ADMIN
from sluice.store.stamps import log_ids

if TYPE_CHECKING:
    from sluice.db.engine import Database

logger = logging.getLogger("sluice.http")
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])

ADMIN_KEY_ACTOR = "admin-key"
"""The actor of a change made with SLUICE_ADMIN_KEY (never the key itself)."""
MEMORY_EVENTS = 1000
"""Without a database, the last this many events are kept in this process's memory."""
WRITE_TIMEOUT_SECONDS = 5.0

Event = dict[str, Any]
_memory: weakref.WeakKeyDictionary[Gateway, deque[Event]] = weakref.WeakKeyDictionary()


class AuditPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[Event]
    has_more: bool
    next_cursor: str | None


def actor_of(admin: Principal) -> str:
    """Who made a change: `admin-key` for SLUICE_ADMIN_KEY, else the admin-scoped key's id."""
    return ADMIN_KEY_ACTOR if admin is ADMIN else admin.key_id


async def record(gateway: Gateway, actor: Principal, action: str, target: str,
                 details: Mapping[str, Any] | None = None) -> None:
    """Note one change made through the admin API, in the database the admin API's changes use (the request
    log's, else the managed keys'), or in memory without one. Never raises: the change is made already, so a
    database that fails here costs the row (logged with the event), not the admin's answer."""
    event: Event = {"id": log_ids(1)[0], "at": datetime.fromtimestamp(time.time(), UTC), "actor": actor_of(actor),
                    "action": action, "target": target, "details": _json_safe(details or {})}
    try:
        db = await _database(gateway)
        if db is None:
            _memory.setdefault(gateway, deque(maxlen=MEMORY_EVENTS)).append(event)
            return
        await asyncio.wait_for(_insert(db, event), WRITE_TIMEOUT_SECONDS)
    except database_errors(TimeoutError, GatewayError) as exc:
        logger.error("admin audit: event not stored (%s: %s): %s", type(exc).__name__, exc,
                     orjson.dumps(event).decode())


@router.get("/audit", response_model=AuditPage)
async def audit_events(
    gateway: CurrentGateway,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None, action: str | None = None, actor: str | None = None,
) -> AuditPage:
    """The changes made through the admin API, newest first; pass `next_cursor` back as `cursor` for more."""
    before = _decode_cursor(cursor) if cursor is not None else None
    db = await _database(gateway)
    if db is None:
        events = _from_memory(gateway, limit + 1, before, action, actor)
    else:
        with _unavailable():
            events = await _select(db, limit + 1, before, action, actor)
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(data=[_shown(event) for event in events], has_more=more,
                     next_cursor=_encode_cursor(events[-1]["id"]) if more else None)


async def _database(gateway: Gateway) -> Database | None:
    """As `Gateway._shared_database`: the request log's database, else the managed keys' (opened now; 503 if it
    cannot be), else None."""
    log = gateway.request_log
    if log is not None and log.db is not None:
        return log.db
    if gateway.keys.managed is None:
        return None
    return (await gateway.keys.store()).db


async def _insert(db: Database, event: Event) -> None:
    from sluice.db.tables import AUDIT_EVENTS  # SQLAlchemy: only once a database is used

    async with db.begin() as connection:
        await connection.execute(AUDIT_EVENTS.insert().values(**event))


async def _select(db: Database, count: int, before: str | None, action: str | None, actor: str | None) -> list[Event]:
    from sqlalchemy import select

    from sluice.db.tables import AUDIT_EVENTS

    table = AUDIT_EVENTS.c
    query = select(AUDIT_EVENTS)
    if before is not None:
        query = query.where(table.id < before)
    if action is not None:
        query = query.where(table.action == action)
    if actor is not None:
        query = query.where(table.actor == actor)
    async with db.connect() as connection:
        result = await connection.execute(query.order_by(table.id.desc()).limit(count))
        return [dict(row) for row in result.mappings()]


def _from_memory(gateway: Gateway, count: int, before: str | None, action: str | None,
                 actor: str | None) -> list[Event]:
    found: list[Event] = []
    for event in reversed(_memory.get(gateway, ())):
        if ((before is None or event["id"] < before) and (action is None or event["action"] == action)
                and (actor is None or event["actor"] == actor)):
            found.append(event)
            if len(found) == count:
                break
    return found


def _shown(event: Event) -> Event:
    at: datetime = event["at"]
    return {"id": event["id"], "at": at.isoformat(timespec="microseconds"), "actor": event["actor"],
            "action": event["action"], "target": event["target"], "details": event["details"]}


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    """`details` as plain JSON values: pydantic models dumped, datetimes as ISO 8601 text."""
    safe: dict[str, Any] = orjson.loads(orjson.dumps(details, default=_plain, option=orjson.OPT_NON_STR_KEYS))
    return safe


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _encode_cursor(event_id: str) -> str:
    return base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("the cursor is not valid; use next_cursor from a previous page", param="cursor") from None


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except database_errors() as exc:
        logger.warning("admin audit: database query failed: %s", exc)
        raise GatewayError("The audit trail's database is unavailable; try again later.", status=503,
                           code="audit_unavailable") from None
