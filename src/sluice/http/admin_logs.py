"""`GET /admin/logs`, `/admin/logs/stream`, `/admin/logs/{id}`, `/admin/usage` and `/admin/usage/series`: the request
log, for admins only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from sluice.db.errors import database_errors
from sluice.errors import GatewayError, InvalidRequest, NotFound
from sluice.gateway import Gateway
from sluice.http.admin_auth import AdminAccess
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.store.queries import LogFilter
    from sluice.store.records import Row

logger = logging.getLogger("sluice.http")
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])

POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 15.0
LATE_SECONDS = 3.0
"""How far back each poll of the stream looks for entries it has not sent: each worker's writer inserts its own
batches, so an entry can become visible after one with a later id (another worker's) was sent already."""
MAX_PER_POLL = 1000
"""At most this many entries a poll (2,000 a second): a console cannot show more."""


class LogPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None


GroupByParam = Literal["model", "key", "provider", "project", "service"]
SeriesBucketParam = Literal["minute", "hour", "day"]


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
            trace_id: str | None = None, service: str | None = None, q: str | None = None) -> LogFilter:
    from sluice.store.queries import LogFilter

    return LogFilter(since=since, until=until, key_id=key_id, model=model, provider=provider, project=project,
                     status=status, trace_id=trace_id, service=service, q=q or None)


FreeText = Annotated[str | None, Query(max_length=1000)]
"""`q`: free text the stored request body contains, case-insensitively."""


@router.get("/logs", response_model=LogPage)
async def logs(
    gateway: CurrentGateway,
    since: datetime | None = None, until: datetime | None = None, key_id: str | None = None,
    model: str | None = None, provider: str | None = None, project: str | None = None,
    status: int | None = None, trace_id: str | None = None, service: str | None = None, q: FreeText = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    include_bodies: bool = False,
) -> LogPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page (stable under concurrent writes).
    `service` keeps a service's exchanges; `q` those whose request body contains the text (case-insensitive)."""
    db = _database(gateway)
    from sluice.store.queries import BadCursor, list_logs
    from sluice.store.records import document

    where = _filter(since, until, key_id, model, provider, project, status, trace_id, service, q)
    with _database_errors():
        try:
            page = await list_logs(db, where, limit=limit, cursor=cursor, bodies=include_bodies)
        except BadCursor as exc:
            raise InvalidRequest(str(exc), param="cursor") from None
    return LogPage(data=[document(row, bodies=include_bodies) for row in page.rows],
                   has_more=page.next_cursor is not None, next_cursor=page.next_cursor)


# Not in /openapi.json (yet): the fuzz and the admin scope walk read every documented operation's body to its end,
# and this one has none (docs/request-log.md documents it; gate.py admits /admin/ paths whatever the document says).
@router.get("/logs/stream", response_class=StreamingResponse, include_in_schema=False)
async def logs_stream(
    gateway: CurrentGateway,
    since: datetime | None = None, until: datetime | None = None, key_id: str | None = None,
    model: str | None = None, provider: str | None = None, project: str | None = None,
    status: int | None = None, trace_id: str | None = None, service: str | None = None, q: FreeText = None,
    backlog: Annotated[int, Query(ge=0, le=200)] = 20,
) -> StreamingResponse:
    """Server-Sent Events: the newest `backlog` matching entries (oldest first), then each new one as it is stored
    (the database polled every 0.5 s), until the client leaves or the gateway stops."""
    db = _database(gateway)
    from sluice.store.queries import id_floor, newest_logs

    where = _filter(since, until, key_id, model, provider, project, status, trace_id, service, q)
    started = time.time()
    with _database_errors():
        newest = await newest_logs(db, where, max(backlog, 1))  # one at least: where "new" starts
    floor = max(id_floor(started - LATE_SECONDS), newest[-1]["id"] if newest else "")
    first = newest[-backlog:] if backlog else []
    return EventStream(_events(gateway, db, where, first, floor), media_type="text/event-stream",
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class EventStream(StreamingResponse):
    """A streaming response that stops when the client leaves, whatever ASGI version the server speaks (Starlette
    listens for the disconnect only before 2.4; after it, only a failed write would tell, up to 15 s later)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream_until_done() -> None:
                with contextlib.suppress(OSError):
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_until_done)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


async def _events(gateway: Gateway, db: Database, where: LogFilter, backlog: list[Row],
                  floor: str) -> AsyncIterator[bytes]:
    """The stream's body: the backlog, then every entry above `floor` not sent yet, in id order, each poll; the
    floor follows `LATE_SECONDS` behind the clock but never below the newest entry there was at the connection
    (older ones are the backlog's). Keep-alive comments between."""
    from sluice.store.queries import id_floor, log_ids_after, logs_by_id

    sent: dict[str, None] = {}  # ids sent and still above the floor, in id order
    yield b": connected\n\n"  # servers send the headers with the first body bytes: the client knows it is in now
    for row in backlog:
        sent[row["id"]] = None
        yield _entry(row)
    quiet_since = time.monotonic()
    while not await _stopping(gateway.closing, POLL_SECONDS):
        try:
            ids = await log_ids_after(db, where, floor)
            fresh = [log_id for log_id in ids if log_id not in sent][:MAX_PER_POLL]
            rows = await logs_by_id(db, fresh)
        except database_errors() as exc:  # the next poll tries again; the console keeps its connection
            logger.warning("admin logs stream: database query failed: %s", exc)
            rows = []
        for row in rows:
            sent[row["id"]] = None
            yield _entry(row)
        if rows:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        floor = max(floor, id_floor(time.time() - LATE_SECONDS))
        for log_id in [log_id for log_id in sent if log_id <= floor]:
            del sent[log_id]


async def _stopping(closing: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True at once when the gateway starts to stop (drain, shutdown)."""
    try:
        await asyncio.wait_for(closing.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _entry(row: Row) -> bytes:
    from sluice.store.records import document

    return b"event: entry\ndata: " + orjson.dumps(document(row, bodies=False)) + b"\n\n"


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


class TracingInfo(BaseModel):
    """Where the traces go, for links to them (the console's request detail)."""

    phoenix_url: str | None
    """Phoenix's base URL when traces go to Phoenix: a trace is at `{phoenix_url}/redirects/traces/{trace_id}`."""


@router.get("/tracing", response_model=TracingInfo)
async def tracing_info(gateway: CurrentGateway) -> TracingInfo:
    """Phoenix's address when the gateway sends it its traces (`PHOENIX_COLLECTOR_ENDPOINT`), else null."""
    endpoint = gateway.settings.phoenix_collector_endpoint
    if not endpoint:
        return TracingInfo(phoenix_url=None)
    return TracingInfo(phoenix_url=endpoint.rstrip("/").removesuffix("/v1/traces").rstrip("/"))


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


class UsageSeries(BaseModel):
    bucket: Literal["minute", "hour", "day"]
    series: list[dict[str, Any]]
    """`{"group", "points": [{"t", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}]}`, a point for every bucket (zeros when empty)."""


@router.get("/usage/series", response_model=UsageSeries)
async def usage_series(
    gateway: CurrentGateway,
    group_by: GroupByParam = "model", bucket: SeriesBucketParam = "hour",
    since: datetime | None = None, until: datetime | None = None, key_id: str | None = None,
    model: str | None = None, provider: str | None = None, project: str | None = None,
) -> UsageSeries:
    """Usage over time for charts: one series per model, key, provider, project or service, a point per UTC
    minute, hour or day in [since, until) (default: the last 60 buckets; at most 2,000), with latency
    percentiles."""
    db = _database(gateway)
    from sluice.store.queries import BadRange, SeriesRange
    from sluice.store.queries import usage_series as series_of

    try:
        span = SeriesRange.of(bucket, since, until)
    except BadRange as exc:
        raise InvalidRequest(str(exc), param="since") from None
    where = _filter(None, None, key_id, model, provider, project)
    with _database_errors():
        series = await series_of(db, where, group_by, span)
    return UsageSeries(bucket=bucket, series=series)
