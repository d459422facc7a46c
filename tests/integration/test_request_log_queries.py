"""Reading the log back: filters, stable cursor pagination, usage aggregates and retention, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.store.queries import BadCursor, LogFilter, get_log, iter_logs, list_logs, usage
from sluice.store.records import document
from sluice.store.retention import cutoff, prune
from tests.request_log_support import count_rows, make_exchange, seed

pytestmark = pytest.mark.anyio
BASE = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> Database:
    database = Database(database_url)
    await upgrade(database)
    yield database  # type: ignore[misc]
    await database.aclose()


def _at(minutes: float) -> float:
    return (BASE + timedelta(minutes=minutes)).timestamp()


async def _collect(db: Database, where: LogFilter, limit: int, between_pages: list[int]) -> list[str]:
    """Page through the log, writing more entries between pages; the request ids seen, in order."""
    seen: list[str] = []
    cursor = None
    page_number = 0
    while True:
        page = await list_logs(db, where, limit=limit, cursor=cursor)
        seen.extend(row["request_id"] for row in page.rows)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        if page_number < len(between_pages):
            await seed(db, [make_exchange(between_pages[page_number] + n, started_at=_at(100 + n)) for n in range(3)])
        page_number += 1


async def test_pagination_is_stable_while_entries_are_written(db: Database) -> None:
    same_moment = [make_exchange(index, started_at=_at(10)) for index in range(12)]
    spread = [make_exchange(index, started_at=_at(index)) for index in range(12, 40)]
    await seed(db, same_moment + spread)
    seen = await _collect(db, LogFilter(), limit=7, between_pages=[1000, 2000, 3000])
    original = {f"req-{index:05d}" for index in range(40)}
    assert len(seen) == len(set(seen)), "an entry was shown twice"
    assert original <= set(seen), "an entry was skipped"
    assert [row for row in seen if row in original][:1] == ["req-00039"]  # newest first


async def test_filters(db: Database) -> None:
    rows = await seed(db, [
        make_exchange(1, started_at=_at(0), key_id="key-a", model="mock"),
        make_exchange(2, started_at=_at(1), key_id="key-b", model="mock"),
        make_exchange(3, started_at=_at(2), key_id="key-a", model="other", status=502),
        make_exchange(4, started_at=_at(90), key_id="key-a", project="demo"),
    ])

    async def ids(where: LogFilter) -> list[str]:
        return [row["request_id"] for row in (await list_logs(db, where)).rows]

    assert await ids(LogFilter(key_id="key-a")) == ["req-00004", "req-00003", "req-00001"]
    assert await ids(LogFilter(model="other")) == ["req-00003"]
    assert await ids(LogFilter(status=502)) == ["req-00003"]
    assert await ids(LogFilter(project="demo")) == ["req-00004"]
    assert await ids(LogFilter(provider="mock", trace_id=f"{2:032x}")) == ["req-00002"]
    assert await ids(LogFilter(since=BASE + timedelta(minutes=1), until=BASE + timedelta(minutes=60))) == \
        ["req-00003", "req-00002"]
    entry = await get_log(db, rows[0]["id"])
    assert entry is not None and document(entry)["request"]["body"]["messages"][0]["content"] == "hello number 1"
    assert await get_log(db, "no-such-id") is None
    with pytest.raises(BadCursor):
        await list_logs(db, LogFilter(), cursor="not-a-cursor")


async def test_usage_per_hour_and_day(db: Database) -> None:
    prices = {"mock": {"input_per_million": 1.0, "output_per_million": 2.0}}
    await seed(db, [
        make_exchange(1, started_at=_at(0), key_id="key-a"),          # 10:15, 3 + 3 tokens
        make_exchange(2, started_at=_at(30), key_id="key-a"),         # 10:45
        make_exchange(3, started_at=_at(50), key_id="key-a", status=500),  # 11:05
        make_exchange(4, started_at=_at(55), key_id="key-b"),         # 11:10
    ], prices=prices)
    hourly = await usage(db, LogFilter(), "hour")
    assert [(r["period_start"], r["key_id"], r["requests"], r["errors"]) for r in hourly] == [
        ("2025-03-04T10:00:00+00:00", "key-a", 2, 0),
        ("2025-03-04T11:00:00+00:00", "key-a", 1, 1),
        ("2025-03-04T11:00:00+00:00", "key-b", 1, 0),
    ]
    assert hourly[0]["total_tokens"] == 12 and hourly[0]["cost_usd"] == pytest.approx(2 * (3 * 1 + 3 * 2) / 1e6)
    assert hourly[1]["error_rate"] == 1.0
    daily = await usage(db, LogFilter(key_id="key-a"), "day")
    assert [(r["period_start"], r["requests"], r["errors"], r["error_rate"]) for r in daily] == [
        ("2025-03-04T00:00:00+00:00", 3, 1, pytest.approx(1 / 3))]


async def test_retention_deletes_old_entries_in_batches(db: Database) -> None:
    now = datetime.now(UTC)
    old = [make_exchange(index, started_at=(now - timedelta(days=40, minutes=index)).timestamp())
           for index in range(25)]
    recent = [make_exchange(index, started_at=(now - timedelta(days=2)).timestamp()) for index in range(25, 30)]
    await seed(db, old + recent)
    assert await prune(db, cutoff(30), batch_size=10) == 25
    assert await count_rows(db) == 5
    assert await prune(db, cutoff(30), batch_size=10) == 0


async def test_export_reads_every_entry_oldest_first(db: Database) -> None:
    await seed(db, [make_exchange(index, started_at=_at(60 - index)) for index in range(23)])
    rows = [row async for row in iter_logs(db, LogFilter(since=BASE), batch=5, bodies=False)]
    assert [row["request_id"] for row in rows] == [f"req-{index:05d}" for index in reversed(range(23))]
    assert "request_body" not in rows[0]
