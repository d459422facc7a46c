"""The gateway's end of the request log writer process: exchanges packed into its pipe, its counters read back.

`observe` packs the exchange (`marshal`, a few µs) onto a buffer. Every `FLUSH_SECONDS` the buffer is written,
without blocking, into the pipe of the writer process (`log_worker.py`), which builds, prints and inserts the
records as the in-process writer would. While the writer is busy (a saturated core: it runs at a lower priority)
exchanges wait in the pipe, then up to `MAX_PENDING_BYTES` in asyncio's buffer, then packed here
(`MAX_PACKED_BYTES`), then unpacked in a queue; past `buffer_size` queued, the oldest are built here and appended
to the spill file, which the writer replays. If the writer process dies, what it had not confirmed is counted as
dropped and logged, and a new one is started. Nothing here waits on the database or the disk on a request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sluice.exchange import Exchange
from sluice.pricing import PriceTable
from sluice.serve.exchange_values import LOG_FIELDS, AnyExchange, ExchangeValues, logged
from sluice.serve.frame_pipe import FrameDecoder, FramePipe, frame
from sluice.store.lines import console_lines, stdout_lines, write_stdout
from sluice.store.options import RequestLogConfig
from sluice.store.recorder import RecorderMetrics, RecorderStats
from sluice.store.records import RecordBuilder
from sluice.store.redaction import redacted_headers, secret_headers
from sluice.store.spill import SpillFile
from sluice.store.stamps import log_ids
from sluice.tasks import stop

logger = logging.getLogger("sluice.request_log")

FLUSH_SECONDS = 0.05
MAX_PACKED_BYTES = 4 * 1024 * 1024
"""Exchanges are packed as they arrive, up to this much between two flushes; past it they wait unpacked. Packing
~200 at once every 50 ms held the event loop ~0.6 ms each time, which showed in the requests' p99."""
MAX_PENDING_BYTES = 32 * 1024 * 1024
"""Packed exchanges asyncio may hold for the pipe (~25,000 chat exchanges) before they wait unpacked."""
RESPAWN_SECONDS = 0.5
MAX_RESPAWN_SECONDS = 60.0
STOP_MARGIN_SECONDS = 5.0
_COUNTERS = tuple(field.name for field in fields(RecorderStats))
_values_of = operator.attrgetter(*LOG_FIELDS[:-2])


def packed(exchange: AnyExchange, secret: frozenset[bytes]) -> bytes:
    """One exchange as a frame of plain values, in `LOG_FIELDS` order: the `secret` headers' values (credentials,
    cookies) redacted here, so they never reach the writer process; the key travels as its peppered hash."""
    return frame((*_values_of(exchange), tuple(redacted_headers(exchange.request_headers, secret)),
                  exchange.key_hash))


def unpacked(values: Sequence[Any]) -> ExchangeValues:
    """The exchange a frame's values (`packed`) carry."""
    return logged(values)


def worker_settings(config: RequestLogConfig, database_url: str, spill_path: Path, console: bool,
                    prices: PriceTable | None, log_format: str) -> dict[str, Any]:
    """Everything the writer process needs, as JSON-able values (its `stats_fd` is added at each start)."""
    return {
        "config": asdict(config),
        "database_url": database_url,
        "spill_path": str(spill_path),
        "console": console,
        "prices": {name: asdict(price) for name, price in (prices.prices if prices else {}).items()},
        "log_format": log_format,
        "priority": config.writer_priority,
    }


class LogSender:
    """Hands exchanges to the writer process; see the module docstring."""

    def __init__(self, config: RequestLogConfig, settings: dict[str, Any], registry: CollectorRegistry | None = None,
                 prices: PriceTable | None = None) -> None:
        self.config = config
        self.settings = settings
        self.stats = RecorderStats()
        """Every writer process's counts added up, and the entries this side spilled or lost."""
        self._metrics = RecorderMetrics(registry) if registry is not None else None
        self._prices = prices
        self._spill = SpillFile(Path(settings["spill_path"]))
        self._secret = frozenset(name.encode("latin-1") for name in secret_headers(config.redaction))
        self._builder: RecordBuilder | None = None
        self._queue: deque[AnyExchange] = deque()
        self._packed = bytearray()
        self._packed_count = 0
        self._pipe: FramePipe | None = None
        self._counters: dict[str, int] = {}
        """The running writer's last report."""
        self._sent = 0
        self._stats_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._spilling: asyncio.Task[None] | None = None
        self._closing = False
        self._ready = False
        self._failures = 0
        """Writers in a row that exited before they were ready: each waits twice as long before the next."""

    @property
    def pid(self) -> int | None:
        """The writer process's id, while one runs."""
        return self._pipe.pid if self._pipe is not None else None

    def observe(self, exchange: Exchange) -> None:
        if self._closing:
            self._drop(1, "the request log is shut down")
        elif len(self._packed) >= MAX_PACKED_BYTES:
            self._queue.append(exchange)
        else:
            try:
                self._packed += packed(exchange, self._secret)
            except ValueError:
                self._drop(1, f"exchange {exchange.request_id} cannot be packed")
                return
            self._packed_count += 1

    @property
    def buffered(self) -> int:
        """Entries not yet in the database: queued here, in the pipe, or held by the writer."""
        in_pipe = max(0, self._sent - self._counters.get("received", 0))
        return self._packed_count + len(self._queue) + in_pipe + self._counters.get("buffered", 0)

    def refresh_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.buffered.set(self.buffered)

    async def start(self) -> None:
        """Start the writer process and the task that feeds it."""
        await self._spawn()
        self._task = asyncio.create_task(self._run(), name="request-log-sender")

    async def aclose(self) -> None:
        """Hand over everything queued, then let the writer flush and exit (its `shutdown_timeout_seconds`)."""
        self._closing = True
        await stop(self._task)
        if self._spilling is not None:
            await self._spilling
        pipe = self._pipe
        if pipe is not None and pipe.open:
            self._send(everything=True)
        if self._packed:
            self._queue.extendleft(reversed([unpacked(values) for values in FrameDecoder().feed(bytes(self._packed))]))
            self._packed.clear()
            self._packed_count = 0
        if self._queue:
            await self._spill_exchanges(list(self._queue))
            self._queue.clear()
        if pipe is not None:
            # A writer still starting that was sent nothing has nothing to write: it need not finish starting.
            await pipe.aclose(self.config.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
                              if self._ready or self._sent else 0)
            await self._writer_gone(pipe, closing=True)

    async def _spawn(self) -> None:
        """Start a writer process; it reports `ready` once it imported what it needs (~1 s; nobody waits)."""
        read_fd, write_fd = os.pipe()
        pipe = FramePipe("sluice.store.log_worker", {**self.settings, "stats_fd": write_fd}, MAX_PENDING_BYTES,
                         pass_fds=(write_fd,), quiet=False)
        try:
            await pipe.start()
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        self._pipe, self._sent, self._counters, self._ready = pipe, 0, {}, False
        self._stats_task = asyncio.create_task(self._read_stats(reader), name="request-log-writer-stats")

    async def _read_stats(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a line torn by the writer's death
            if "ready" in message:
                self._ready, self._failures = True, 0
            elif "error" in message:
                logger.error("request log: the writer process could not start: %s", message["error"])
            else:
                for name in _COUNTERS:
                    if delta := message[name] - self._counters.get(name, 0):
                        self._count(name, delta)
                self._counters = message

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            pipe = self._pipe
            if pipe is not None and pipe.returncode is None:
                self._send()
            else:
                if pipe is not None:
                    await self._writer_gone(pipe, closing=False)
                await self._respawn()
            if len(self._queue) > self.config.buffer_size and self._spilling is None:
                overflow = [self._queue.popleft() for _ in range(len(self._queue) - self.config.buffer_size)]
                self._spilling = asyncio.create_task(self._spill_overflow(overflow))

    def _send(self, everything: bool = False) -> None:
        """Hand the packed exchanges to the pipe, then pack queued ones, as many as its room allows (or all)."""
        assert self._pipe is not None
        room = self._pipe.room
        if self._packed:
            if not room and not everything:
                return  # the cap is soft: once asyncio's buffer is under it, the whole packed buffer goes
            self._pipe.write(self._packed)
            room -= len(self._packed)
            self._sent += self._packed_count
            self._packed, self._packed_count = bytearray(), 0
        frames = bytearray()
        queue = self._queue
        while queue and (everything or len(frames) < room):
            exchange = queue.popleft()
            try:
                frames += packed(exchange, self._secret)
            except ValueError:
                self._drop(1, f"exchange {exchange.request_id} cannot be packed")
                continue
            self._sent += 1
        if frames:
            self._pipe.write(frames)

    async def _writer_gone(self, pipe: FramePipe, *, closing: bool) -> None:
        """Read the writer's last report; count what it never confirmed as dropped."""
        if self._stats_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stats_task, STOP_MARGIN_SECONDS)
            self._stats_task = None
        lost = max(0, self._sent - self._counters.get("received", 0)) + self._counters.get("buffered", 0)
        if not self._ready:
            self._failures += 1
        stopped_while_starting = closing and not self._ready and not self._sent
        if not stopped_while_starting and (pipe.returncode or lost or not closing):
            logger.error("request log: the writer process exited (status %s); %d entries it held are lost%s",
                         pipe.returncode, lost, "" if closing else "; starting a new one")
        if lost:
            self._count("dropped", lost)
        self._pipe, self._sent, self._counters = None, 0, {}

    async def _respawn(self) -> None:
        await asyncio.sleep(min(RESPAWN_SECONDS * 2 ** self._failures, MAX_RESPAWN_SECONDS))
        try:
            await self._spawn()
        except OSError as exc:
            logger.error("request log: cannot start a writer process (%s); entries wait in memory, then on disk",
                         exc)

    async def _spill_overflow(self, exchanges: list[AnyExchange]) -> None:
        try:
            await self._spill_exchanges(exchanges)
            if self._pipe is not None:
                self._pipe.write(frame(None))  # the writer replays the spill file after its next insert
        finally:
            self._spilling = None

    async def _spill_exchanges(self, exchanges: list[AnyExchange]) -> None:
        """Build records for `exchanges` here and append them to the spill file (the writer could not take them)."""
        if self._builder is None:
            self._builder = RecordBuilder(self.config, self._prices)
        records = []
        for exchange, log_id in zip(exchanges, log_ids(len(exchanges)), strict=True):
            try:
                records.append(self._builder.record(exchange, log_id))
            except Exception:
                logger.exception("request log: cannot record exchange %s; dropped", exchange.request_id)
                self._count("dropped", 1)
        if self.config.stdout and records:
            await write_stdout(console_lines(records) if self.settings["console"]
                               else stdout_lines(records, bodies=self.config.stdout_bodies))
        if not self.config.database or not records:
            return
        try:
            await self._spill.append(records)
        except OSError as exc:
            self._drop(len(records), f"the spill file {self._spill.path} cannot be written ({exc})")
            return
        self._count("spilled", len(records))

    def _drop(self, count: int, reason: str) -> None:
        self._count("dropped", count)
        logger.error("request log: dropped %d entr%s: %s", count, "y" if count == 1 else "ies", reason)

    def _count(self, what: str, count: int) -> None:
        setattr(self.stats, what, getattr(self.stats, what) + count)
        if self._metrics is not None:
            self._metrics.counters[what].inc(count)
