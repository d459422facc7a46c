"""The batched background writer: requests only enqueue; batches, retries, spill, replay and drops happen here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from sluice.pricing import PriceTable
from sluice.serve.exchange_values import AnyExchange
from sluice.store.lines import console_lines, stdout_lines, write_stdout
from sluice.store.options import RequestLogConfig
from sluice.store.records import ID, Record, RecordBuilder
from sluice.store.spill import SpillFile
from sluice.store.stamps import log_ids
from sluice.store.writers import RowWriter, WriteFailed, WriteRejected

logger = logging.getLogger("sluice.request_log")
_TRANSIENT = (WriteFailed, TimeoutError)  # the writers turn every other database error into WriteFailed
_DROP_LOG_SECONDS = 10.0
_BUILD_SLICE = 16
"""Records built between two yields to the event loop: built at once, a batch of 200 held every request waiting
on the loop for ~2-3 ms (~10 µs a record under load), which showed in their p99."""


@dataclass(slots=True)
class RecorderStats:
    written: int = 0
    spilled: int = 0
    replayed: int = 0
    dropped: int = 0
    failed_writes: int = 0
    batches: int = 0
    """Batches inserted into the database (`written` ÷ `batches` is the mean batch size)."""


class Recorder:
    """An Observer that persists exchanges without ever making a request wait.

    `observe` appends to a bounded in-memory buffer. The writer task takes batches from it when `batch_size` are
    waiting or `flush_interval_seconds` has passed, builds the records (decoding, redaction, cost; ~10 µs each under
    load, so on the event loop, `_BUILD_SLICE` at a time: a thread would only add GIL hand-offs), writes their
    stdout lines in one write, and inserts them. A failed insert is retried with exponential backoff while new
    exchanges wait in the buffer; once the buffer is full, further exchanges are written to the spill file, which is
    replayed after the next successful insert. Every row carries its log id from the moment it is built and the
    database skips ids it already has, so retries and replays store each entry exactly once. An exchange is dropped
    (counted and logged) only when the spill file cannot be written either.
    """

    def __init__(self, config: RequestLogConfig, db: RowWriter | None, spill: SpillFile,
                 registry: CollectorRegistry | None = None, prices: PriceTable | None = None) -> None:
        self.config = config
        self.db = db
        self.spill = spill
        self.builder = RecordBuilder(config, prices)
        self.console = False
        """Write the stdout lines for people (`console_lines`) rather than as JSON."""
        self.stats = RecorderStats()
        self._metrics = RecorderMetrics(registry) if registry is not None else None
        self._pending: deque[AnyExchange] = deque()
        self._building: list[AnyExchange] = []
        self._in_flight: list[Record] = []
        self._overflow: deque[AnyExchange] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._overflow_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._deadline = float("inf")
        self._healthy = True
        self._spill_waiting = False
        self._tasks: list[asyncio.Task[None]] = []
        self._unlogged_drops = 0
        self._last_drop_log = -_DROP_LOG_SECONDS

    def observe(self, exchange: AnyExchange) -> None:
        """Enqueue `exchange`; never waits and never raises."""
        if self._closing:
            self._drop(1, "the request log is shut down")
        elif len(self._pending) + len(self._building) + len(self._in_flight) < self.config.buffer_size:
            self._pending.append(exchange)
            if len(self._pending) >= self.config.batch_size:
                self._wake.set()
        elif len(self._overflow) < self.config.spill_queue_size:
            self._overflow.append(exchange)
            self._overflow_ready.set()
        else:
            self._drop(1, "both the buffer and the spill queue are full")

    async def room(self, limit: int) -> None:
        """Return once fewer than `limit` exchanges wait for the writer task, or while the database refuses writes
        or the recorder shuts down (then the buffer, up to `buffer_size`, and the spill file take them as before).

        For a producer that can wait, the writer process's reader: it reads exchanges much faster than they are
        built, so a writer that falls behind (SCHED_IDLE on a busy core) took its whole backlog out of the pipe and
        held it decoded, up to `buffer_size` and then in the spill queue, ~1.5 KB of small objects per exchange
        that the heap kept after the backlog was written (+30 MB for 20,000 keyless requests). Waiting here
        leaves the backlog in the pipe and the gateway's buffers, as bytes."""
        while len(self._pending) >= limit and self._healthy and not self._closing:
            self._room.clear()
            await self._room.wait()

    def spill_arrived(self) -> None:
        """Another process appended to the spill file: replay it after the next successful insert."""
        self._spill_waiting = True

    @property
    def buffered(self) -> int:
        return len(self._pending) + len(self._building) + len(self._in_flight) + len(self._overflow)

    def refresh_metrics(self) -> None:
        """Before a scrape: how many entries wait in memory now."""
        if self._metrics is not None:
            self._metrics.buffered.set(self.buffered)

    async def start(self) -> None:
        self._spill_waiting = await asyncio.to_thread(self.spill.has_data)
        self._tasks = [asyncio.create_task(self._write_loop(), name="request-log-writer"),
                       asyncio.create_task(self._spill_loop(), name="request-log-spill")]

    async def aclose(self) -> None:
        """Write what is buffered (for at most `shutdown_timeout_seconds`), spill the rest to disk."""
        self._closing = True
        self._deadline = time.monotonic() + self.config.shutdown_timeout_seconds
        for event in (self._wake, self._stop, self._overflow_ready, self._room):
            event.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.config.shutdown_timeout_seconds + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        unbuilt = [*self._building, *self._pending, *self._overflow]
        leftovers = self._in_flight + await self._build(unbuilt)
        self._building, self._in_flight = [], []
        self._pending.clear()
        self._overflow.clear()
        await self._spill(leftovers)

    async def _write_loop(self) -> None:
        backoff = self.config.retry_initial_seconds
        while not self._closing or ((self._pending or self._in_flight) and time.monotonic() < self._deadline):
            if not self._in_flight:
                if len(self._pending) < self.config.batch_size and not self._closing:
                    await _nap(self._wake, self.config.flush_interval_seconds)
                if not self._pending:
                    await self._replay_if_waiting()
                    continue
                self._building = [self._pending.popleft()
                                  for _ in range(min(self.config.batch_size, len(self._pending)))]
                self._room.set()
                self._in_flight = await self._build(self._building)
                self._building = []
            if await self._insert(self._in_flight):
                self._count("written", len(self._in_flight))
                self._count("batches", 1 if self._in_flight else 0)
                self._in_flight = []
                backoff = self.config.retry_initial_seconds
                await self._replay_if_waiting()
            elif self._closing:
                return
            else:
                await _nap(self._stop, backoff)
                backoff = min(backoff * 2, self.config.retry_max_seconds)

    async def _spill_loop(self) -> None:
        while True:
            await _nap(self._overflow_ready, None)
            while self._overflow:
                batch = [self._overflow.popleft() for _ in range(min(self.config.batch_size, len(self._overflow)))]
                await self._spill(await self._build(batch))
            if self._closing:
                return

    async def _build(self, exchanges: Sequence[AnyExchange]) -> list[Record]:
        """Records for `exchanges`; their stdout lines are written in one write."""
        if not exchanges:
            return []
        records: list[Record] = []
        lines: list[bytes] = []
        ids = log_ids(len(exchanges))
        for start in range(0, len(exchanges), _BUILD_SLICE):
            if start:
                await asyncio.sleep(0)
            built: list[Record] = []
            for exchange, log_id in zip(exchanges[start:start + _BUILD_SLICE], ids[start:start + _BUILD_SLICE],
                                        strict=True):
                try:
                    built.append(self.builder.record(exchange, log_id))
                except Exception:
                    logger.exception("request log: cannot record exchange %s; dropped", exchange.request_id)
                    self._count("dropped", 1)
            if self.config.stdout and built:
                lines.append(console_lines(built) if self.console
                             else stdout_lines(built, bodies=self.config.stdout_bodies))
            records += built
        if lines:
            await write_stdout(b"".join(lines))
        return records if self.db is not None else []

    async def _insert(self, records: list[Record]) -> bool:
        if self.db is None or not records:
            return True
        timeout = self.config.write_timeout_seconds
        if self._closing:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        try:
            await asyncio.wait_for(self.db.insert(records), timeout)
        except WriteRejected as exc:
            logger.error("request log: the database refused a batch (%s); writing it row by row", _describe(exc))
            if not await self._insert_each(records):
                return False
        except _TRANSIENT as exc:
            self._count("failed_writes", 1)
            if self._healthy:
                logger.warning("request log: database write failed (%s); buffering and retrying",
                               _describe(exc))
            self._healthy = False
            self._room.set()
            return False
        if not self._healthy:
            logger.warning("request log: database writes work again")
        self._healthy = True
        return True

    async def _insert_each(self, records: list[Record]) -> bool:
        """Store the rows the database accepts and drop (count, log) those it refuses; False if it went away."""
        assert self.db is not None
        for record in records:
            try:
                await asyncio.wait_for(self.db.insert([record]), self.config.write_timeout_seconds)
            except WriteRejected as exc:
                self._drop(1, f"the database refused entry {record[ID]} ({_describe(exc)})")
            except _TRANSIENT:
                return False
        return True

    async def _spill(self, records: list[Record]) -> None:
        if not records:
            return
        try:
            await self.spill.append(records)
        except OSError as exc:
            self._drop(len(records), f"the spill file {self.spill.path} cannot be written ({exc})")
            return
        self._count("spilled", len(records))
        self._spill_waiting = True

    async def _replay_if_waiting(self) -> None:
        if not self._spill_waiting or self.db is None or self._closing:
            return
        self._spill_waiting = False  # set again by any spill made while this replay runs
        for path in await self.spill.take():
            unreadable = self.spill.unreadable_lines
            replayed = await self.spill.replay(path, self.config.batch_size, self._insert)
            self._count("dropped", self.spill.unreadable_lines - unreadable)
            if replayed is None:
                self._spill_waiting = True
                return
            self._count("replayed", replayed)
            if replayed:
                logger.warning("request log: replayed %d entries from %s", replayed, path.name)

    def _drop(self, count: int, reason: str) -> None:
        """Count lost entries; log at most one line per `_DROP_LOG_SECONDS` (a full buffer drops in bursts)."""
        self._count("dropped", count)
        self._unlogged_drops += count
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_SECONDS:
            logger.error("request log: dropped %d entr%s: %s", self._unlogged_drops,
                         "y" if self._unlogged_drops == 1 else "ies", reason)
            self._unlogged_drops, self._last_drop_log = 0, now

    def _count(self, what: str, count: int) -> None:
        setattr(self.stats, what, getattr(self.stats, what) + count)
        if self._metrics is not None:
            self._metrics.counters[what].inc(count)


class RecorderMetrics:
    """The request log's counters and its `buffered` gauge, in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        help_texts = {
            "written": "Request log entries written to the database",
            "spilled": "Request log entries written to the spill file",
            "replayed": "Request log entries replayed from the spill file",
            "dropped": "Request log entries lost (spill file unwritable, or not recordable)",
            "failed_writes": "Failed request log database writes (each is retried)",
            "batches": "Request log batches written to the database",
        }
        self.counters = {name: Counter(f"sluice_request_log_{name}", text, registry=registry)
                         for name, text in help_texts.items()}
        self.buffered = Gauge("sluice_request_log_buffered", "Request log entries waiting in memory",
                              registry=registry, multiprocess_mode="livesum")


async def _nap(event: asyncio.Event, seconds: float | None) -> None:
    """Wait until `event` is set or `seconds` pass, then clear it."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass
    event.clear()


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
