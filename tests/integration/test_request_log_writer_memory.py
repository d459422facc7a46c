"""The request log's writer process keeps no memory from what it wrote: a burst it could not keep up with (a
starved SCHED_IDLE writer), or batches of every size, leave its RSS where it was; every entry is still written,
none spilled or dropped."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.exchange import Exchange
from sluice.store import log_sender
from tests.request_log_support import recorder_config

WARM_UP = 5_000
"""Enough for SQLite's page cache (2 MiB) and the writer's own caches to reach their size first."""
BURST = 20_000
SIZES = range(136, 160)
MAX_GROWTH_KB = 2 * 1024
BODY = b'{"model":"mock","messages":[{"role":"user","content":"hi"}]}'
REFUSED = b'{"error":{"message":"Missing API key","type":"authentication_error","code":"missing_api_key"}}'


def keyless(index: int) -> Exchange:
    """A chat request refused for want of a key, as the gateway hands it to the request log."""
    return Exchange(request_id=uuid.uuid4().hex, endpoint="/v1/chat/completions", method="POST",
                    started_at=time.time(), status=401, request_body=BODY, response_body=REFUSED,
                    request_headers=[(b"host", b"127.0.0.1:8000"), (b"accept-encoding", b"identity"),
                                     (b"content-length", b"60"), (b"content-type", b"application/json"),
                                     (b"x-index", str(index).encode())],
                    latency_total=0.0001, error="Missing API key", error_type="authentication_error",
                    error_code="missing_api_key", trace_id=uuid.uuid4().hex)


def anonymous_kb(pid: int) -> int:
    """The process's resident anonymous memory (its heap; not the shared libraries it maps), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError(f"no RssAnon for {pid}")


async def send(sender: log_sender.LogSender, start: int, count: int) -> None:
    """Hand `count` exchanges over as a busy gateway would: a few hundred per flush of the sender."""
    for index in range(start, start + count):
        sender.observe(keyless(index))
        if index % 500 == 0:
            await asyncio.sleep(0.01)


async def written(sender: log_sender.LogSender, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while sender.stats.written + sender.stats.replayed < count or sender.buffered:
        assert time.monotonic() < deadline, f"{sender.stats} after {within} s"
        await asyncio.sleep(0.05)


async def started(tmp_path: Path) -> log_sender.LogSender:
    """A gateway's sender and its writer process, on a migrated SQLite file, warmed up with `WARM_UP` entries."""
    url = f"sqlite:///{tmp_path}/sluice.db"
    db = Database(url)
    await upgrade(db)
    await db.aclose()
    config = recorder_config(batch_size=200, buffer_size=10_000, spill_queue_size=10_000, write_timeout_seconds=10)
    sender = log_sender.LogSender(config, log_sender.worker_settings(config, url, tmp_path / "spill.jsonl", False,
                                                                     None, "json"))
    await sender.start()
    await send(sender, 0, WARM_UP)
    await written(sender, WARM_UP, 30)
    return sender


@pytest.mark.anyio
async def test_a_backlog_leaves_the_writer_process_at_its_size(tmp_path: Path) -> None:
    sender = await started(tmp_path)
    try:
        pid = sender.pid
        assert pid is not None
        before = anonymous_kb(pid)
        os.kill(pid, signal.SIGSTOP)  # a writer that gets no CPU time while requests keep coming
        try:
            await send(sender, WARM_UP, BURST)
            await asyncio.sleep(0.2)  # the sender's last flushes into the pipe
        finally:
            os.kill(pid, signal.SIGCONT)
        await written(sender, WARM_UP + BURST, 60)
        grown = anonymous_kb(pid) - before
    finally:
        await sender.aclose()
    assert sender.stats.written == WARM_UP + BURST
    assert sender.stats.spilled == sender.stats.dropped == 0
    assert grown < MAX_GROWTH_KB, f"the writer grew by {grown / 1024:.1f} MiB over a backlog of {BURST}"


@pytest.mark.anyio
async def test_batches_of_many_sizes_leave_the_writer_process_at_its_size(tmp_path: Path) -> None:
    """A quiet gateway's batches are whatever arrived in a flush interval: 24 sizes of 136-159 entries here."""
    sender = await started(tmp_path)
    try:
        pid = sender.pid
        assert pid is not None
        before = anonymous_kb(pid)
        total = WARM_UP
        for size in SIZES:
            await send(sender, total, size)
            total += size
            await written(sender, total, 10)
        grown = anonymous_kb(pid) - before
    finally:
        await sender.aclose()
    assert sender.stats.written == total and sender.stats.spilled == sender.stats.dropped == 0
    assert sender.stats.batches >= len(SIZES) + WARM_UP // 200
    assert grown < MAX_GROWTH_KB, f"the writer grew by {grown / 1024:.1f} MiB over batches of {len(SIZES)} sizes"
