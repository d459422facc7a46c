"""Database outages: requests never wait, nothing is lost, and every entry is stored exactly once."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.exchange import Exchange
from tests.fakes.tcp_proxy import TcpProxy
from tests.request_log_support import count_rows, make_exchange, make_recorder, request_ids, wait_until
from tests.servers import free_port

pytestmark = pytest.mark.anyio


def _via(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


async def _burst(observe: Callable[[Exchange], None], start: int, count: int) -> float:
    """Observe `count` exchanges spread over a few event-loop turns; the slowest observe() call, in seconds."""
    slowest = 0.0
    for index in range(start, start + count):
        exchange = make_exchange(index, stream=index % 3 == 0)
        began = time.perf_counter()
        observe(exchange)
        slowest = max(slowest, time.perf_counter() - began)
        if index % 5 == 0:
            await asyncio.sleep(0.002)
    return slowest


def _spill_files(folder: Path) -> list[Path]:
    """Spill and replay files left in `folder` (the lock file may stay)."""
    return [path for path in folder.glob("spill.jsonl*") if not path.name.endswith(".lock")]


def _expected(count: int) -> list[str]:
    return [f"req-{index:05d}" for index in range(count)]


@pytest.mark.postgres
async def test_postgres_down_during_a_burst_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    direct = Database(postgres_url)
    await upgrade(direct)
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.up()
    db = Database(_via(postgres_url, proxy.port), timeout=1)
    recorder = make_recorder(db, tmp_path / "spill.jsonl", buffer_size=40, batch_size=10, write_timeout_seconds=1)
    await recorder.start()

    await _burst(recorder.observe, 0, 20)
    await wait_until(lambda: _has(direct, 20))
    await proxy.down()
    slowest = await _burst(recorder.observe, 20, 280)
    await wait_until(lambda: _true(recorder.stats.spilled > 0 and recorder.stats.failed_writes > 0))
    # Far below any database timeout; not tighter, as the writer's thread may hold the GIL for a switch interval.
    assert slowest < 0.05, f"observe() took {slowest * 1000:.1f} ms while the database was down"
    assert await count_rows(direct) == 20
    await proxy.up()

    await wait_until(lambda: _has(direct, 300), within=20)
    await recorder.aclose()
    assert sorted(await request_ids(direct)) == _expected(300)
    assert recorder.stats.dropped == 0 and recorder.stats.replayed == recorder.stats.spilled
    assert _spill_files(tmp_path) == []
    await asyncio.gather(db.aclose(), direct.aclose(), proxy.down())


@pytest.mark.postgres
async def test_a_stalled_database_times_out_and_catches_up(postgres_url: str, tmp_path: Path) -> None:
    direct = Database(postgres_url)
    await upgrade(direct)
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.hang()
    db = Database(_via(postgres_url, proxy.port), timeout=0.3)
    recorder = make_recorder(db, tmp_path / "spill.jsonl", buffer_size=50, batch_size=10, write_timeout_seconds=0.3)
    await recorder.start()
    slowest = await _burst(recorder.observe, 0, 120)
    assert slowest < 0.05
    await wait_until(lambda: _true(recorder.stats.failed_writes > 0))
    await proxy.down()
    await proxy.up()
    await wait_until(lambda: _has(direct, 120), within=20)
    await recorder.aclose()
    assert sorted(await request_ids(direct)) == _expected(120)
    await asyncio.gather(db.aclose(), direct.aclose(), proxy.down())


async def test_closed_port_then_real_database_replays_the_spill_file_exactly_once(
        database_url: str, tmp_path: Path) -> None:
    """Gateway 1 runs with its database unreachable and spills on shutdown; gateway 2 replays — even twice."""
    spill = tmp_path / "spill.jsonl"
    unreachable = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere", timeout=0.5)
    first = make_recorder(unreachable, spill, buffer_size=20, batch_size=5, shutdown_timeout_seconds=0.2)
    await first.start()
    await _burst(first.observe, 0, 60)
    await first.aclose()
    await unreachable.aclose()
    assert first.stats.written == 0 and first.stats.dropped == 0
    assert len(spill.read_bytes().splitlines()) == 60
    crash_copy = tmp_path / "copy.jsonl"
    shutil.copy(spill, crash_copy)

    db = Database(database_url)
    await upgrade(db)
    second = make_recorder(db, spill)
    await second.start()
    await wait_until(lambda: _true(second.stats.replayed == 60))
    await second.aclose()
    assert sorted(await request_ids(db)) == _expected(60)
    assert not spill.exists()

    # A crash after inserting but before removing the replay file: the next start replays it again.
    shutil.copy(crash_copy, tmp_path / "spill.jsonl.replay-crashed")
    third = make_recorder(db, spill)
    await third.start()
    await wait_until(lambda: _true(third.stats.replayed == 60))
    await third.aclose()
    assert sorted(await request_ids(db)) == _expected(60)
    await db.aclose()


async def test_an_unwritable_spill_file_drops_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-dir").write_text("")
    unreachable = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere", timeout=0.5)
    recorder = make_recorder(unreachable, tmp_path / "not-a-dir" / "spill.jsonl", buffer_size=5, batch_size=5,
                             shutdown_timeout_seconds=0.1)
    await recorder.start()
    await _burst(recorder.observe, 0, 30)
    await recorder.aclose()
    await unreachable.aclose()
    assert recorder.stats.dropped == 30 and recorder.stats.written == 0
    assert "request log: dropped" in caplog.text


async def _has(db: Database, count: int) -> bool:
    return await count_rows(db) >= count


async def _true(value: bool) -> bool:
    return value


async def test_a_torn_spill_line_is_counted_and_the_rest_replayed(tmp_path: Path) -> None:
    """A crash in the middle of an append leaves half a line: it is dropped and counted, the rest stored."""
    spill = tmp_path / "spill.jsonl"
    unreachable = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere", timeout=0.5)
    first = make_recorder(unreachable, spill, buffer_size=5, batch_size=5, shutdown_timeout_seconds=0.1)
    await first.start()
    await _burst(first.observe, 0, 10)
    await first.aclose()
    await unreachable.aclose()
    with spill.open("ab") as handle:
        handle.write(b'{"id": "torn", "timest')
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/log.db")
    await upgrade(db)
    second = make_recorder(db, spill)
    await second.start()
    await wait_until(lambda: _true(second.stats.replayed == 10))
    await second.aclose()
    assert sorted(await request_ids(db)) == _expected(10)
    assert second.stats.dropped == 1
    await db.aclose()
