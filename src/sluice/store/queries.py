"""Reading the request log: filtered pages with stable cursors, entries by id for the live stream, single entries,
usage aggregates and series, export."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Select, Text, and_, case, cast, func, literal_column, or_, select

from sluice.db.engine import Database
from sluice.db.tables import REQUEST_LOGS
from sluice.store.records import Row

Bucket = Literal["hour", "day"]
SeriesBucket = Literal["minute", "hour", "day"]
GroupBy = Literal["model", "key", "provider", "project", "service"]
SERVICE_OPERATIONS = ("service", "websocket")
"""The `operation` of a service route's exchanges (HTTP and WebSocket): their `provider` column is the service."""
BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_BUCKETS = 2000
_BODY_COLUMNS = ("request_body", "response_body", "response_text")
_T = REQUEST_LOGS.c


class BadCursor(ValueError):
    """The pagination cursor was not issued by this API."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Conditions on the log; None means no condition."""

    since: datetime | None = None
    until: datetime | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    project: str | None = None
    status: int | None = None
    trace_id: str | None = None
    service: str | None = None
    """A service's exchanges (its routes' HTTP and WebSocket ones)."""
    q: str | None = None
    """Free text the stored request body contains, case-insensitively (ILIKE; on SQLite lower() LIKE lower())."""

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(_T.timestamp >= self.since)
        if self.until is not None:
            found.append(_T.timestamp < self.until)
        for name in ("key_id", "model", "provider", "project", "status", "trace_id"):
            value = getattr(self, name)
            if value is not None:
                found.append(_T[name] == value)
        if self.service is not None:
            found.append(and_(_T.provider == self.service, _T.operation.in_(SERVICE_OPERATIONS)))
        if self.q:
            found.append(cast(_T.request_body, Text).ilike(f"%{_escape_like(self.q)}%", escape="\\"))
        return found


def _escape_like(text: str) -> str:
    """`text` matched literally by LIKE: its wildcards and the escape character escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def encode_cursor(row: Row) -> str:
    raw = orjson.dumps([row["timestamp"].isoformat(), row["id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, log_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(stamp), str(log_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise BadCursor("the cursor is not valid; use next_cursor from a previous page") from None


def _columns(bodies: bool) -> Select[Any]:
    if bodies:
        return select(REQUEST_LOGS)
    return select(*(column for column in REQUEST_LOGS.columns if column.name not in _BODY_COLUMNS))


async def list_logs(db: Database, where: LogFilter, *, limit: int = 50, cursor: str | None = None,
                    bodies: bool = False) -> Page:
    """Newest first, ordered by (timestamp, id): a cursor names the last entry seen, so pages never repeat or
    skip entries, whatever is written meanwhile."""
    query = _columns(bodies).where(*where.conditions())
    if cursor is not None:
        stamp, log_id = decode_cursor(cursor)
        query = query.where(or_(_T.timestamp < stamp, and_(_T.timestamp == stamp, _T.id < log_id)))
    query = query.order_by(_T.timestamp.desc(), _T.id.desc()).limit(limit + 1)
    async with db.connect() as connection:
        rows = [dict(row) for row in (await connection.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more else None)


async def newest_logs(db: Database, where: LogFilter, count: int) -> list[Row]:
    """The `count` newest matching entries by log id (ids sort by the time they were made), oldest first, without
    bodies: the live stream's backlog."""
    if count <= 0:
        return []
    query = _columns(False).where(*where.conditions()).order_by(_T.id.desc()).limit(count)
    async with db.connect() as connection:
        rows = [dict(row) for row in (await connection.execute(query)).mappings()]
    rows.reverse()
    return rows


def id_floor(stamp: float) -> str:
    """The smallest log id made at Unix time `stamp` or later: ids start with their Unix milliseconds in hex
    (store/stamps.py), so `id > id_floor(t)` selects the entries whose ids were made since `t`."""
    millis = f"{int(stamp * 1000) & 0xFFFF_FFFF_FFFF:012x}"
    return f"{millis[:8]}-{millis[8:]}"


async def log_ids_after(db: Database, where: LogFilter, floor: str, *, limit: int = 20_000) -> list[str]:
    """The ids of the matching entries above `floor`, ascending: a primary key range, without reading rows."""
    query = select(_T.id).where(_T.id > floor, *where.conditions()).order_by(_T.id).limit(limit)
    async with db.connect() as connection:
        return list((await connection.execute(query)).scalars())


async def logs_by_id(db: Database, ids: Sequence[str]) -> list[Row]:
    """The entries with these ids, without bodies, in id order."""
    if not ids:
        return []
    query = _columns(False).where(_T.id.in_(list(ids))).order_by(_T.id)
    async with db.connect() as connection:
        return [dict(row) for row in (await connection.execute(query)).mappings()]


async def get_log(db: Database, log_id: str) -> Row | None:
    async with db.connect() as connection:
        row = (await connection.execute(select(REQUEST_LOGS).where(_T.id == log_id))).mappings().first()
    return dict(row) if row is not None else None


async def iter_logs(db: Database, where: LogFilter, *, bodies: bool = True, batch: int = 500) -> AsyncIterator[Row]:
    """Every matching entry, oldest first, read in keyset-paginated batches (for export)."""
    after: tuple[datetime, str] | None = None
    while True:
        query = _columns(bodies).where(*where.conditions())
        if after is not None:
            query = query.where(or_(_T.timestamp > after[0], and_(_T.timestamp == after[0], _T.id > after[1])))
        query = query.order_by(_T.timestamp, _T.id).limit(batch)
        async with db.connect() as connection:
            rows = [dict(row) for row in (await connection.execute(query)).mappings()]
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = (rows[-1]["timestamp"], rows[-1]["id"])


_SQLITE_BUCKETS = {"minute": "'%Y-%m-%d %H:%M:00'", "hour": "'%Y-%m-%d %H:00:00'", "day": "'%Y-%m-%d 00:00:00'"}


def _bucket(db: Database, bucket: SeriesBucket) -> ColumnElement[Any]:
    """The start of the UTC minute, hour or day; literals, not parameters, so GROUP BY matches the selected
    expression."""
    if bucket not in _SQLITE_BUCKETS:
        raise ValueError(f"bucket must be minute, hour or day, not {bucket!r}")
    if db.dialect == "postgresql":
        return func.date_trunc(literal_column(f"'{bucket}'"), func.timezone(literal_column("'UTC'"), _T.timestamp))
    return func.strftime(literal_column(_SQLITE_BUCKETS[bucket]), _T.timestamp)


def _failed() -> ColumnElement[int]:
    return case((or_(_T.status >= 400, _T.status == 0, _T.error.is_not(None)), 1), else_=0)


def _start(period: Any) -> datetime:
    """A bucket's start as the database gives it (a datetime, or SQLite's text), timezone-aware UTC."""
    start = period if isinstance(period, datetime) else datetime.fromisoformat(str(period))
    return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)


async def usage(db: Database, where: LogFilter, bucket: Bucket = "hour") -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost per time bucket, key, model and provider (UTC buckets)."""
    period = _bucket(db, bucket).label("period")
    failed = _failed()
    query = (
        select(period, _T.key_id, _T.model, _T.provider, func.count().label("requests"),
               func.sum(failed).label("errors"), func.sum(_T.prompt_tokens).label("prompt_tokens"),
               func.sum(_T.completion_tokens).label("completion_tokens"),
               func.sum(_T.total_tokens).label("total_tokens"), func.sum(_T.cost_usd).label("cost_usd"))
        .where(*where.conditions())
        .group_by(period, _T.key_id, _T.model, _T.provider)
        .order_by(period, _T.key_id, _T.model, _T.provider)
    )
    async with db.connect() as connection:
        result = (await connection.execute(query)).mappings().all()
    return [_usage_row(dict(row)) for row in result]


def _usage_row(row: dict[str, Any]) -> dict[str, Any]:
    start = _start(row["period"])
    requests, errors = int(row["requests"]), int(row["errors"] or 0)
    return {
        "period_start": start.isoformat(),
        "key_id": row["key_id"], "model": row["model"], "provider": row["provider"],
        "requests": requests, "errors": errors, "error_rate": round(errors / requests, 6) if requests else 0.0,
        "prompt_tokens": int(row["prompt_tokens"] or 0), "completion_tokens": int(row["completion_tokens"] or 0),
        "total_tokens": int(row["total_tokens"] or 0),
        "cost_usd": round(float(row["cost_usd"]), 10) if row["cost_usd"] is not None else None,
    }


class BadRange(ValueError):
    """A series asked for more buckets than `MAX_BUCKETS`, or ends before it starts."""


@dataclass(frozen=True, slots=True)
class SeriesRange:
    """The buckets of a series: [since, until), `bucket` wide, at most `MAX_BUCKETS` of them."""

    since: datetime
    until: datetime
    bucket: SeriesBucket

    @classmethod
    def of(cls, bucket: SeriesBucket, since: datetime | None, until: datetime | None) -> SeriesRange:
        """`until` defaults to now and `since` to 60 buckets before it (an hour of minutes, 60 hours, 60 days)."""
        width = timedelta(seconds=BUCKET_SECONDS[bucket])
        try:
            end = _utc(until) if until is not None else datetime.now(UTC)
            start = _utc(since) if since is not None else end - 60 * width
        except OverflowError:  # a default `since` before year 1
            raise BadRange("until is too early") from None
        if start >= end:
            raise BadRange("since must be before until")
        first = _floor(start, bucket)
        if math.ceil((end - first) / width) > MAX_BUCKETS:
            raise BadRange(f"that range holds more than {MAX_BUCKETS} {bucket} buckets; narrow it or use a wider "
                           "bucket")
        return cls(start, end, bucket)

    def starts(self) -> list[datetime]:
        width = timedelta(seconds=BUCKET_SECONDS[self.bucket])
        found, at = [], _floor(self.since, self.bucket)
        while at < self.until:
            found.append(at)
            if at > datetime.max.replace(tzinfo=UTC) - width:  # the last bucket before year 10000
                break
            at += width
        return found


def _utc(stamp: datetime) -> datetime:
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _floor(stamp: datetime, bucket: SeriesBucket) -> datetime:
    if bucket == "minute":
        return stamp.replace(second=0, microsecond=0)
    if bucket == "hour":
        return stamp.replace(minute=0, second=0, microsecond=0)
    return stamp.replace(hour=0, minute=0, second=0, microsecond=0)


PERCENTILES = (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99))


def _group_column(group_by: GroupBy) -> tuple[ColumnElement[Any], list[ColumnElement[bool]]]:
    """The column a series groups by, and what keeps only the rows that have a group (a provider's series leaves
    the service routes' exchanges out, a service's keeps only them)."""
    column = {"model": _T.model, "key": _T.key_id, "provider": _T.provider, "project": _T.project,
              "service": _T.provider}[group_by]
    only: list[ColumnElement[bool]] = [column.is_not(None)]
    if group_by == "service":
        only.append(_T.operation.in_(SERVICE_OPERATIONS))
    elif group_by == "provider":
        only.append(or_(_T.operation.is_(None), _T.operation.not_in(SERVICE_OPERATIONS)))
    return column, only


async def usage_series(db: Database, where: LogFilter, group_by: GroupBy, span: SeriesRange) -> list[dict[str, Any]]:
    """Per group, one point per bucket of `span` (empty buckets as zeros): requests, errors, tokens, cost, and the
    total latency's 50th, 95th and 99th percentiles (continuous, as PostgreSQL's percentile_cont; computed there
    in SQL, in Python on SQLite)."""
    period = _bucket(db, span.bucket).label("period")
    column, only = _group_column(group_by)
    group = column.label("group")
    conditions = [*where.conditions(), *only, _T.timestamp >= span.since, _T.timestamp < span.until]
    measures: list[Any] = [func.count().label("requests"), func.sum(_failed()).label("errors"),
                           func.sum(_T.prompt_tokens).label("prompt_tokens"),
                           func.sum(_T.completion_tokens).label("completion_tokens"),
                           func.sum(_T.cost_usd).label("cost_usd")]
    postgres = db.dialect == "postgresql"
    if postgres:
        measures += [func.percentile_cont(fraction).within_group(_T.latency_total_ms).label(name)
                     for name, fraction in PERCENTILES]
    query = select(period, group, *measures).where(*conditions).group_by(period, group)
    async with db.connect() as connection:
        totals = [dict(row) for row in (await connection.execute(query)).mappings()]
        latencies = {} if postgres else await _latencies(connection, period, group, conditions)
    points: dict[str, dict[datetime, dict[str, Any]]] = {}
    for row in totals:
        start = _start(row["period"])
        if not postgres:
            row.update(_percentiles(latencies.get((row["group"], start), [])))
        points.setdefault(row["group"], {})[start] = _point(start, row)
    return [{"group": name, "points": [found.get(start) or _point(start, {}) for start in span.starts()]}
            for name, found in sorted(points.items())]


async def _latencies(connection: Any, period: ColumnElement[Any], group: ColumnElement[Any],
                     conditions: list[ColumnElement[bool]]) -> dict[tuple[str, datetime], list[float]]:
    """Each (group, bucket)'s total latencies, sorted (SQLite has no percentile function)."""
    query = (select(period, group, _T.latency_total_ms)
             .where(*conditions, _T.latency_total_ms.is_not(None)).order_by(_T.latency_total_ms))
    found: dict[tuple[str, datetime], list[float]] = {}
    for row in (await connection.execute(query)).mappings():
        found.setdefault((row["group"], _start(row["period"])), []).append(float(row["latency_total_ms"]))
    return found


def _percentiles(ordered: list[float]) -> dict[str, float | None]:
    return {name: percentile(ordered, fraction) for name, fraction in PERCENTILES}


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The continuous percentile of sorted values (linear interpolation between the closest ranks, as
    PostgreSQL's percentile_cont); None for no values."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _point(start: datetime, row: dict[str, Any]) -> dict[str, Any]:
    def rounded(name: str) -> float | None:
        value = row.get(name)
        return round(float(value), 3) if value is not None else None

    cost = row.get("cost_usd")
    return {"t": start.isoformat(), "requests": int(row.get("requests") or 0), "errors": int(row.get("errors") or 0),
            "prompt_tokens": int(row.get("prompt_tokens") or 0),
            "completion_tokens": int(row.get("completion_tokens") or 0),
            "cost_usd": round(float(cost), 10) if cost is not None else 0.0,
            **{name: rounded(name) for name, _ in PERCENTILES}}
