"""Reading the request log: filtered pages with stable cursors, single entries, usage aggregates, export."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Select, and_, case, func, literal_column, or_, select

from sluice.db.engine import Database
from sluice.db.tables import REQUEST_LOGS
from sluice.store.records import Row

Bucket = Literal["hour", "day"]
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
        return found


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


def _bucket(db: Database, bucket: Bucket) -> ColumnElement[Any]:
    """The start of the UTC hour or day; literals, not parameters, so GROUP BY matches the selected expression."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be hour or day, not {bucket!r}")
    if db.dialect == "postgresql":
        return func.date_trunc(literal_column(f"'{bucket}'"), func.timezone(literal_column("'UTC'"), _T.timestamp))
    pattern = "'%Y-%m-%d %H:00:00'" if bucket == "hour" else "'%Y-%m-%d 00:00:00'"
    return func.strftime(literal_column(pattern), _T.timestamp)


async def usage(db: Database, where: LogFilter, bucket: Bucket = "hour") -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost per time bucket, key, model and provider (UTC buckets)."""
    period = _bucket(db, bucket).label("period")
    failed = case((or_(_T.status >= 400, _T.status == 0, _T.error.is_not(None)), 1), else_=0)
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
    period = row["period"]
    start = period if isinstance(period, datetime) else datetime.fromisoformat(str(period))
    requests, errors = int(row["requests"]), int(row["errors"] or 0)
    return {
        "period_start": start.replace(tzinfo=UTC).isoformat(),
        "key_id": row["key_id"], "model": row["model"], "provider": row["provider"],
        "requests": requests, "errors": errors, "error_rate": round(errors / requests, 6) if requests else 0.0,
        "prompt_tokens": int(row["prompt_tokens"] or 0), "completion_tokens": int(row["completion_tokens"] or 0),
        "total_tokens": int(row["total_tokens"] or 0),
        "cost_usd": round(float(row["cost_usd"]), 10) if row["cost_usd"] is not None else None,
    }
