"""`GET /admin/logs`, `/admin/logs/{id}` and `/admin/usage`: the request log, for the admin key only."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from sluice.db.errors import database_errors
from sluice.errors import GatewayError, InvalidRequest, NotFound
from sluice.gateway import Gateway
from sluice.http.admin_auth import AdminAccess
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.store.queries import LogFilter

logger = logging.getLogger("sluice.http")
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])


class LogPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None


class UsageReport(BaseModel):
    object: Literal["list"] = "list"
    bucket: Literal["hour", "day"]
    data: list[dict[str, Any]]


def _database(gateway: Gateway) -> Database:
    """The request log's database, or 404 when the config has none (checked before the queries are imported: they
    load SQLAlchemy)."""
    log = gateway.request_log
    if log is None or log.db is None:
        raise GatewayError("The request log is disabled in this gateway's config (request_log.enabled / "
                           "request_log.database).", status=404, type="invalid_request_error",
                           code="request_log_disabled")
    return log.db


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except database_errors() as exc:
        logger.warning("admin logs: database query failed: %s", exc)
        raise GatewayError("The request log database is unavailable; try again later.", status=503,
                           code="request_log_unavailable") from None


def _filter(since: datetime | None, until: datetime | None, key_id: str | None, model: str | None,
            provider: str | None, project: str | None, status: int | None = None,
            trace_id: str | None = None) -> LogFilter:
    from sluice.store.queries import LogFilter

    return LogFilter(since=since, until=until, key_id=key_id, model=model, provider=provider, project=project,
                     status=status, trace_id=trace_id)


@router.get("/logs", response_model=LogPage)
async def logs(
    gateway: CurrentGateway,
    since: datetime | None = None, until: datetime | None = None, key_id: str | None = None,
    model: str | None = None, provider: str | None = None, project: str | None = None,
    status: int | None = None, trace_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    include_bodies: bool = False,
) -> LogPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page (stable under concurrent writes)."""
    db = _database(gateway)
    from sluice.store.queries import BadCursor, list_logs
    from sluice.store.records import document

    where = _filter(since, until, key_id, model, provider, project, status, trace_id)
    with _database_errors():
        try:
            page = await list_logs(db, where, limit=limit, cursor=cursor, bodies=include_bodies)
        except BadCursor as exc:
            raise InvalidRequest(str(exc), param="cursor") from None
    return LogPage(data=[document(row, bodies=include_bodies) for row in page.rows],
                   has_more=page.next_cursor is not None, next_cursor=page.next_cursor)


@router.get("/logs/{log_id}")
async def log_entry(gateway: CurrentGateway, log_id: str) -> dict[str, Any]:
    """One entry with its (redacted) bodies."""
    db = _database(gateway)
    from sluice.store.queries import get_log
    from sluice.store.records import document

    with _database_errors():
        row = await get_log(db, log_id)
    if row is None:
        raise NotFound(f"No request log entry with id {log_id!r}.")
    return document(row)


@router.get("/usage", response_model=UsageReport)
async def usage_report(
    gateway: CurrentGateway,
    since: datetime | None = None, until: datetime | None = None, key_id: str | None = None,
    model: str | None = None, provider: str | None = None, project: str | None = None,
    bucket: Literal["hour", "day"] = "hour",
) -> UsageReport:
    """Requests, errors, error rate, tokens and cost per UTC hour or day, key, model and provider."""
    db = _database(gateway)
    from sluice.store.queries import usage

    where = _filter(since, until, key_id, model, provider, project)
    with _database_errors():
        rows = await usage(db, where, bucket)
    return UsageReport(bucket=bucket, data=rows)
