"""CPU the request log costs the gateway process per exchange: realistic exchanges through the real Recorder.

    .venv/bin/python bench/recorder_cost.py [--count 20000] [--databases sqlite,postgresql] [--profile]

Each exchange is what the bench's chat request leaves behind (wrk's headers and body, the bench upstream's reply,
default redaction, stdout line on, written to a temporary file as Sluice's stdout is in the bench). They are fed to
the real `Recorder` (pinned to one core, as the bench pins the gateway), 32 per event-loop turn and never more than
1,000 waiting, until every row is in a real database: a SQLite file
in a temporary directory, and a PostgreSQL database created for the run and dropped afterwards
(`SLUICE_TEST_POSTGRES_URL`, default postgresql://postgres@127.0.0.1:5432/test). The figure is the process CPU
time (every thread: the writer's SQLite thread and SQLite itself count) per exchange, minus the same feeding loop with a
no-op observer. For PostgreSQL the server backend's CPU is shown apart (it is another process). Best of 3 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import asyncpg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.db.tables import REQUEST_LOGS
from sluice.exchange import Exchange
from sluice.store.options import RequestLogConfig
from sluice.store.recorder import Recorder
from sluice.store.spill import SpillFile

POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
BURST = 32
MAX_BACKLOG = 1000
REQUEST = b'{"model":"gpt-bench","messages":[{"role":"user","content":"Hello there, how are you?"}]}'
REPLY = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench",'
         b'"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
         b'"content":"Hello! I am a benchmark upstream, answering at once."}}],'
         b'"usage":{"prompt_tokens":12,"completion_tokens":12,"total_tokens":24}}')


def exchange() -> Exchange:
    """What bench/run.py's chat scenario leaves for the observers (wrk's headers, granian's lower-case names), made
    fresh for each request as the gateway makes them (so the garbage collector sees what it sees there)."""
    headers = [(b"host", b"127.0.0.1:43117"), (b"content-type", b"application/json"),
               (b"authorization", b"Bearer sk-bench"), (b"content-length", b"%d" % len(REQUEST))]
    return Exchange(request_id=os.urandom(16).hex(), endpoint="/v1/chat/completions", method="POST",
                    started_at=time.time(), operation="chat", key_id="key-3b3c8f2e1a90", provider="up",
                    model="gpt-bench", upstream_model="gpt-bench", status=200, request_headers=headers,
                    request_body=bytes(REQUEST), response_body=bytes(REPLY), latency_total=0.00041,
                    latency_upstream=0.00019)


def exchanges(count: int) -> list[Exchange]:
    return [exchange() for _ in range(count)]


class NullObserver:
    def observe(self, exchange: Exchange) -> None:
        pass


async def feed(observe: Callable[[Exchange], None], count: int, backlog: Callable[[], int] = lambda: 0) -> None:
    """`count` new exchanges, `BURST` per event-loop turn; waits while more than `MAX_BACKLOG` are waiting for the
    writer (a gateway's requests arrive no faster than it serves them, and the buffer must not spill)."""
    for start in range(0, count, BURST):
        for _ in range(min(BURST, count - start)):
            observe(exchange())
        await asyncio.sleep(0)
        for _ in range(100_000):  # until the writer has caught up
            if backlog() <= MAX_BACKLOG:
                break
            await asyncio.sleep(0.001)


async def rows(db: Database) -> int:
    async with db.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(REQUEST_LOGS))).scalar_one())


async def backend_cpu(db: Database) -> float | None:
    """CPU seconds of the PostgreSQL backends serving this database (same machine only)."""
    if db.is_sqlite:
        return None
    async with db.connect() as connection:
        pids = (await connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))).scalars().all()
    return _cpu_seconds(pids)


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def one_round(url: str, spill: Path, count: int, profile: cProfile.Profile | None) -> tuple[float, float | None]:
    """µs of gateway CPU per exchange (and of PostgreSQL backend CPU), for `count` exchanges stored."""
    db = Database(url)
    await upgrade(db)
    recorder = Recorder(RequestLogConfig(), db, SpillFile(spill))
    await recorder.start()
    await feed(recorder.observe, 500, lambda: recorder.buffered)  # warm-up: pool, prepared statements, caches
    await _settle(recorder, 500)
    before = await rows(db)
    server_before = await backend_cpu(db)
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    await feed(recorder.observe, count, lambda: recorder.buffered)
    await _settle(recorder, 500 + count)
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - cpu
    server_after = await backend_cpu(db)
    stored = await rows(db) - before
    await recorder.aclose()
    await db.aclose()
    if stored != count or recorder.stats.dropped or recorder.stats.spilled:
        raise SystemExit(f"recorder_cost: {stored} of {count} stored, stats {recorder.stats}")
    server = None if server_before is None or server_after is None else (server_after - server_before) / count * 1e6
    return cpu / count * 1e6, server


async def _settle(recorder: Recorder, written: int) -> None:
    """Until `written` entries are in the database (polled: the recorder has no event for it)."""
    while True:
        if recorder.stats.written >= written:
            return
        if recorder.stats.spilled or recorder.stats.dropped:
            raise SystemExit(f"recorder_cost: the recorder spilled or dropped entries: {recorder.stats}")
        await asyncio.sleep(0.005)


async def baseline(count: int) -> float:
    """µs per exchange of making and feeding exchanges to an observer that does nothing (subtracted)."""
    cpu = time.process_time()
    await feed(NullObserver().observe, count)
    return (time.process_time() - cpu) / count * 1e6


@contextlib.asynccontextmanager
async def database(kind: str, folder: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder}/sluice.db"
        return
    base = make_url(os.environ.get("SLUICE_TEST_POSTGRES_URL") or POSTGRES_DEFAULT)
    name = f"sluice_recorder_cost_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """Point file descriptor 1 (and sys.stdout) at `path`, as the bench does with Sluice's output."""
    sys.stdout.flush()
    saved = os.dup(1)
    with path.open("wb") as sink:
        os.dup2(sink.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--profile", action="store_true", help="print the top functions (cProfile, last round)")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # one core, as the bench gives the gateway
    loop_cost = min([await baseline(args.count) for _ in range(3)])
    results: list[str] = []
    for kind in args.databases.split(","):
        costs: list[tuple[float, float | None]] = []
        profile = cProfile.Profile() if args.profile else None
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="sluice-recorder-cost-") as folder:
                async with database(kind, Path(folder)) as url:
                    with stdout_to(Path(folder) / "stdout.log"):
                        costs.append(await one_round(url, Path(folder) / "spill.jsonl", args.count, profile))
        best = min(costs, key=lambda cost: cost[0])
        server = f", PostgreSQL backend {best[1]:.1f} µs" if best[1] is not None else ""
        results.append(f"{kind:>10}: {best[0] - loop_cost:6.1f} µs CPU per exchange in the gateway process{server} "
                       f"(rounds: {', '.join(f'{c[0] - loop_cost:.1f}' for c in costs)}; {args.count} exchanges, "
                       f"making and feeding them, {loop_cost:.2f} µs, subtracted)")
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    try:
        import uvloop  # the gateway's event loop (granian runs uvloop)
    except ImportError:
        sys.exit(asyncio.run(main()))
    sys.exit(uvloop.run(main()))
