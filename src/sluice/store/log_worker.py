"""The request log writer process: `python -m sluice.store.log_worker`, started by `LogSender` in each worker.

Building a record (decoding, stream assembly, redaction, cost) and SQLite's insert cost ~20 µs an exchange, a
sixth of a whole gateway request; here they run outside the gateway's GIL, at a lower CPU priority.

Protocol (`frame_pipe.py`): one line of JSON settings on stdin (`log_sender.worker_settings`), then frames, each
an exchange (`log_sender.packed`) or None ("the gateway appended to the spill file"). EOF means shut down:
the `Recorder` writes what it holds (spilling what the database will not take), then we exit. On the descriptor
`stats_fd` we write JSON lines: `{"ready": true}` once migrations ran (or `{"error": …}` and exit 1), then the
counters whenever they change (`received`, `buffered`, and the `RecorderStats`), the last one after the flush.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sluice.pricing import Price, PriceTable
from sluice.serve.frame_pipe import FrameDecoder, detach, lower_priority
from sluice.store.log_sender import unpacked
from sluice.store.log_writer import LogWriter
from sluice.store.options import request_log_config
from sluice.store.writers import open_writer
from sluice.telemetry.logs import configure_logging

logger = logging.getLogger("sluice.request_log")
STDIN = 0
READ_BYTES = 1 << 16
"""At most this much is read from the pipe at a time (~140 keyless exchanges; asyncio reads at most twice this
ahead). While `BACKLOG_BATCHES` batches wait in the recorder, nothing is read (`Recorder.room`): the backlog stays
in the pipe and the gateway's buffers, as bytes."""
BACKLOG_BATCHES = 1
REPORT_SECONDS = 0.1


class Worker:
    """Feeds the frames read from stdin to a `LogWriter`, and reports its counters."""

    def __init__(self, settings: dict[str, Any]) -> None:
        config = request_log_config(settings["config"])
        self.stats_fd = int(settings["stats_fd"])
        prices = PriceTable({name: Price(**value) for name, value in settings["prices"].items()}, warn_missing=False)
        self.db = (open_writer(settings["database_url"], config.write_timeout_seconds, config.batch_size)
                   if config.database else None)
        self.writer = LogWriter(config, self.db, Path(settings["spill_path"]), console=settings["console"],
                                prices=prices)
        self.received = 0
        self._reported: dict[str, int] = {}

    async def run(self, first: bytes) -> None:
        """Start the writer, then feed it `first` (what followed the settings line) and stdin until EOF."""
        try:
            await self.writer.start()
        except Exception as exc:
            self.report({"error": f"{type(exc).__name__}: {exc}"})
            raise
        self.report({"ready": True})
        _tune_garbage_collector()
        reporter = asyncio.create_task(self._report_changes())
        try:
            await self._read(first, STDIN)
        finally:
            await self.writer.aclose()
            reporter.cancel()
            self._report_counters()
            if self.db is not None:
                await self.db.aclose()

    async def _read(self, first: bytes, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
        decoder = FrameDecoder()
        recorder = self.writer.recorder
        backlog = min(BACKLOG_BATCHES * recorder.config.batch_size, recorder.config.buffer_size)
        data = first
        while True:
            for values in decoder.feed(data):
                if values is None:
                    recorder.spill_arrived()
                    continue
                self.received += 1
                try:
                    recorder.observe(unpacked(values))
                except Exception:
                    logger.exception("request log: could not read an exchange from the gateway; dropped")
                    recorder.stats.dropped += 1
            await recorder.room(backlog)
            data = await reader.read(READ_BYTES)
            if not data:
                return

    async def _report_changes(self) -> None:
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            self._report_counters()

    def _report_counters(self) -> None:
        counters = {"received": self.received, "buffered": self.writer.recorder.buffered,
                    **asdict(self.writer.recorder.stats)}
        if counters != self._reported:
            self._reported = counters
            self.report(counters)

    def report(self, message: dict[str, Any]) -> None:
        try:
            os.write(self.stats_fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # the gateway is gone; the rows still go to the database


def _tune_garbage_collector() -> None:
    """As the gateway does once started (`app.tune_garbage_collector`): the start-up objects (asyncpg, the
    migrations' imports) out of the collector's sight, and the young generation collected every 20,000 net
    allocations instead of 700. Building and inserting rows allocates many short-lived objects: the recorder's
    CPU per row (bench/recorder_cost.py's exchange, PostgreSQL, in process) went from 9.4-15.3 µs to 8.4-10.5."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def read_settings(fd: int) -> tuple[dict[str, Any], bytes]:
    """The settings line, and whatever bytes followed it in the same reads (unbuffered: asyncio reads the rest)."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            raise SystemExit("request log writer: no settings on stdin")
        data += chunk
    line, _, rest = data.partition(b"\n")
    return json.loads(line), rest


def main() -> None:
    detach()
    # It runs in a process group of its own (frame_pipe.py); a stray signal must not lose what it holds either: it ends
    # only at EOF, once it wrote everything.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings, first = read_settings(STDIN)
    configure_logging(settings["log_format"], level=logging.INFO)
    lower_priority(settings["priority"])
    worker = Worker(settings)
    try:
        asyncio.run(worker.run(first))
    except Exception:
        logger.exception("request log: the writer process failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
