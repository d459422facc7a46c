"""The background writer on real databases (a SQLite file and a PostgreSQL database of each test's own)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.db.tables import REQUEST_LOGS
from sluice.store.queries import LogFilter, list_logs
from tests.request_log_support import KEY, KEY_HASH, count_rows, make_exchange, make_recorder, request_ids, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(database_url: str) -> Database:
    database = Database(database_url)
    await upgrade(database)
    yield database  # type: ignore[misc]
    await database.aclose()


async def test_a_full_batch_is_written_without_waiting_for_the_interval(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=10, flush_interval_seconds=30)
    await recorder.start()
    for index in range(10):
        recorder.observe(make_exchange(index))
    await wait_until(lambda: _has(db, 10), within=5)
    await recorder.aclose()


async def test_batches_are_counted(db: Database, tmp_path: Path) -> None:
    """`written` ÷ `batches` (sluice_request_log_batches_total) is the mean batch size an operator can watch."""
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=10, flush_interval_seconds=30)
    await recorder.start()
    for index in range(20):
        recorder.observe(make_exchange(index))
    await wait_until(lambda: _has(db, 20), within=5)
    await recorder.aclose()
    assert (recorder.stats.written, recorder.stats.batches) == (20, 2)


async def test_a_partial_batch_is_written_when_the_interval_passes(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=100, flush_interval_seconds=0.1)
    await recorder.start()
    recorder.observe(make_exchange(1))
    started = time.monotonic()
    await wait_until(lambda: _has(db, 1), within=5)
    assert time.monotonic() - started < 2
    await recorder.aclose()


async def test_shutdown_flushes_the_buffer(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl", batch_size=1000, flush_interval_seconds=60,
                             buffer_size=1000)
    await recorder.start()
    for index in range(250):
        recorder.observe(make_exchange(index))
    await recorder.aclose()
    assert sorted(await request_ids(db)) == [f"req-{index:05d}" for index in range(250)]
    assert not (tmp_path / "spill.jsonl").exists()
    assert recorder.stats.written == 250 and recorder.stats.dropped == 0


async def test_a_streamed_reply_is_stored_assembled_with_usage(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl")
    await recorder.start()
    recorder.observe(make_exchange(7, stream=True, text="the quick brown fox jumps"))
    await recorder.aclose()
    page = await list_logs(db, LogFilter(), bodies=True)
    [row] = page.rows
    assert row["stream"] is True
    assert row["response_text"] == "the quick brown fox jumps"
    message = row["response_body"]["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "the quick brown fox jumps"}
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (5, 5, 10)
    assert row["time_to_first_token_ms"] == 4.0
    assert row["key_hash"] == KEY_HASH
    assert row["request_headers"]["authorization"] == row["request_headers"]["cookie"] == "[REDACTED]"
    assert row["request_body"]["messages"][0]["content"] == "the quick brown fox jumps"


async def test_bodies_are_json_in_the_database(db: Database, tmp_path: Path) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl")
    await recorder.start()
    recorder.observe(make_exchange(1))
    await recorder.aclose()
    async with db.connect() as connection:
        body = (await connection.execute(select(REQUEST_LOGS.c.response_body))).scalar_one()
    assert body["object"] == "chat.completion"


async def test_a_database_that_is_not_ready_gets_every_entry_once_it_is(database_url: str, tmp_path: Path) -> None:
    """The table does not exist yet (migrations not run): writes fail, are retried, and land once it does."""
    db = Database(database_url)
    recorder = make_recorder(db, tmp_path / "spill.jsonl", buffer_size=30, batch_size=10)
    await recorder.start()
    for index in range(80):
        recorder.observe(make_exchange(index))
        await asyncio.sleep(0.002)
    await wait_until(lambda: _true(recorder.stats.failed_writes > 0 and recorder.stats.spilled > 0))
    await upgrade(db)
    await wait_until(lambda: _has(db, 80))
    await recorder.aclose()
    assert sorted(await request_ids(db)) == [f"req-{index:05d}" for index in range(80)]
    assert recorder.stats.dropped == 0
    await db.aclose()


async def test_stdout_gets_one_line_per_exchange_without_bodies_or_secrets(
        db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder = make_recorder(db, tmp_path / "spill.jsonl", stdout=True)
    await recorder.start()
    recorder.observe(make_exchange(1))
    recorder.observe(make_exchange(2, stream=True))
    await recorder.aclose()
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["request_id"] for line in lines] == ["req-00001", "req-00002"]
    assert all("body" not in line["request"] and "body" not in line["response"] for line in lines)
    assert lines[1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert KEY not in str(lines) and "session=secret" not in str(lines)
    assert await count_rows(db) == 2


async def test_stdout_only_when_the_database_is_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder = make_recorder(None, tmp_path / "spill.jsonl", stdout=True, stdout_bodies=True)
    await recorder.start()
    recorder.observe(make_exchange(3, text="hi there"))
    await recorder.aclose()
    [line] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["response"]["text"] == "hi there"
    assert not (tmp_path / "spill.jsonl").exists()


async def _has(db: Database, count: int) -> bool:
    return await count_rows(db) >= count


async def _true(value: bool) -> bool:
    return value
