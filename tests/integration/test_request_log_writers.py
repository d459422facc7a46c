"""The raw-driver inserts: refused rows, big batches, in-memory SQLite, and a PostgreSQL connection lost between
batches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.store.queries import LogFilter, get_log, list_logs
from sluice.store.recorder import Recorder
from sluice.store.records import RecordBuilder, row_of
from sluice.store.stamps import log_ids
from sluice.store.writers import WriteRejected
from tests.request_log_support import count_rows, make_exchange, make_recorder, recorder_config, request_ids

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(database_url: str) -> Database:
    database = Database(database_url)
    await upgrade(database)
    yield database  # type: ignore[misc]
    await database.aclose()


async def test_a_refused_row_is_dropped_and_the_rest_of_its_batch_stored(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=10)
    await recorder.start()
    for index in range(10):
        exchange = make_exchange(index)
        if index == 4:
            exchange.request_id = None  # type: ignore[assignment]  # NOT NULL: the database refuses this row
        recorder.observe(exchange)
    await recorder.aclose()
    assert sorted(await request_ids(db)) == [f"req-{index:05d}" for index in range(10) if index != 4]
    assert recorder.stats.dropped == 1 and recorder.stats.written == 10 and recorder.stats.spilled == 0
    record = RecordBuilder(recorder_config()).record(make_exchange(99))
    record[2] = None  # request_id
    with pytest.raises(WriteRejected):
        await db.insert([record])


async def test_big_batches_and_repeats_are_stored_once(db: Database) -> None:
    builder = RecordBuilder(recorder_config())
    exchanges = [make_exchange(index, stream=index % 7 == 0) for index in range(1234)]
    records = [builder.record(exchange, log_id) for exchange, log_id in zip(exchanges, log_ids(1234), strict=True)]
    await db.insert(records)
    await db.insert(records[100:900])  # a retried batch, a replayed spill file
    assert await count_rows(db) == 1234
    stored = await get_log(db, records[7][0])
    assert stored is not None
    expected = row_of(records[7])
    assert {name: stored[name] for name in expected} == expected


async def test_an_in_memory_sqlite_database_goes_through_the_pool() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    await upgrade(db)
    builder = RecordBuilder(recorder_config())
    await db.insert([builder.record(make_exchange(index)) for index in range(3)])
    assert len((await list_logs(db, LogFilter())).rows) == 3
    await db.aclose()


@pytest.mark.postgres
async def test_a_connection_closed_by_the_server_between_batches_is_replaced(postgres_url: str, tmp_path: Path
                                                                               ) -> None:
    db = Database(postgres_url)
    await upgrade(db)
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=5, flush_interval_seconds=30)
    await recorder.start()
    for index in range(5):
        recorder.observe(make_exchange(index))
    await _until_written(recorder, 5)
    url = make_url(postgres_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        killed = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = $1 AND pid <> pg_backend_pid()", url.database)
    finally:
        await admin.close()
    assert killed >= 1
    for index in range(5, 10):
        recorder.observe(make_exchange(index))
    await _until_written(recorder, 10)
    await recorder.aclose()
    assert recorder.stats.failed_writes == 0 and sorted(await request_ids(db)) == [f"req-{i:05d}" for i in range(10)]
    await db.aclose()


async def _until_written(recorder: Recorder, count: int) -> None:
    deadline = time.monotonic() + 10
    while recorder.stats.written < count:
        assert time.monotonic() < deadline, "not written in time"
        await asyncio.sleep(0.02)
