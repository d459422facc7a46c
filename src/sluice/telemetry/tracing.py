"""Tracing: where spans go (Phoenix, a generic OTLP collector, or nowhere) and the observer that ships them.

`TracingObserver.observe` packs a sampled exchange as a compact `marshal` record (a few µs) into a bounded
buffer; every `FLUSH_SECONDS` a task on the event loop writes the buffer, without blocking, into a pipe to the
span exporter process (`span_worker.py`), which decodes bodies and streams, builds the OpenInference spans,
encodes them as OTLP protobuf and exports them in batches. Packing each exchange as it ends, rather than the ~200 queued
in 50 ms at once, keeps the event loop from stalling ~0.6 ms every 50 ms (the request log's sender measured
that in p99; docs/benchmarks.md). A slow or dead collector, or a starved exporter process, only ever fills the
pipe and then the buffer: records are then dropped and counted (`sluice_telemetry_dropped_total{sink="traces"}`),
and requests never wait.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sluice.exchange import Exchange
from sluice.serve.exchange_values import RECORD_FIELDS
from sluice.serve.frame_pipe import FramePipe, frame
from sluice.tasks import stop

logger = logging.getLogger("sluice.telemetry")

FLUSH_SECONDS = 0.05
MAX_PACKED_BYTES = 4 * 1024 * 1024
"""Packed records waiting for the next flush; past it, exchanges are dropped (the pipe is full, too)."""
MAX_PENDING_BYTES = 16 * 1024 * 1024
STOP_SECONDS = 10.0
_fields_of = operator.attrgetter(*RECORD_FIELDS)


@dataclass(frozen=True)
class TraceExport:
    """Where spans go: Phoenix or any OTLP/HTTP collector, at `endpoint` (the kind decides the headers)."""

    kind: Literal["phoenix", "otlp"]
    endpoint: str


def trace_export(phoenix_endpoint: str | None, otlp_endpoint: str | None) -> TraceExport | None:
    """`PHOENIX_COLLECTOR_ENDPOINT` wins over `OTEL_EXPORTER_OTLP_ENDPOINT`; neither means tracing is off."""
    if phoenix_endpoint:
        return TraceExport("phoenix", phoenix_endpoint)
    if otlp_endpoint:
        return TraceExport("otlp", otlp_endpoint)
    return None


def record_of(exchange: Exchange, identity_headers: dict[bytes, str]) -> tuple[Any, ...]:
    """The exchange as a tuple of plain values `marshal` can carry (`RECORD_FIELDS`, then the trace ids and the
    `session.id`/`user.id` attributes its headers give); nothing else of the request headers leaves."""
    identity = {}
    if identity_headers:
        for name, value in exchange.request_headers:
            attribute = identity_headers.get(name.lower())
            if attribute is not None:
                identity[attribute] = value.decode("latin-1")
    trace = exchange.trace.as_tuple() if exchange.trace is not None else None
    return (*_fields_of(exchange), trace, identity)


class TracingObserver:
    """Ships sampled exchanges to the span exporter process; see the module docstring."""

    def __init__(self, worker_settings: dict[str, Any], identity_headers: dict[bytes, str],
                 on_drop: Callable[[int], None] | None = None, stop_seconds: float = STOP_SECONDS) -> None:
        self.worker_settings = worker_settings
        self.stop_seconds = stop_seconds
        self.identity_headers = identity_headers
        self.on_drop = on_drop
        self.dropped = 0
        self._packed = bytearray()
        self._packed_count = 0
        self._pipe: FramePipe | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def exporter_pid(self) -> int | None:
        """The span exporter process's id, while it runs."""
        return self._pipe.pid if self._pipe is not None else None

    @property
    def pending(self) -> int:
        """Exchanges packed and not yet handed to the pipe."""
        return self._packed_count

    def observe(self, exchange: Exchange) -> None:
        if exchange.trace is None or not exchange.trace.sampled:
            return
        if len(self._packed) >= MAX_PACKED_BYTES:
            self._drop(1)
            return
        try:
            self._packed += frame(record_of(exchange, self.identity_headers))
        except ValueError:
            logger.exception("could not pack exchange %s for tracing", exchange.request_id)
            return
        self._packed_count += 1

    async def start(self) -> None:
        """Start the exporter process and the flushing task."""
        self._pipe = FramePipe("sluice.telemetry.span_worker", self.worker_settings, MAX_PENDING_BYTES)
        await self._pipe.start()
        self._task = asyncio.create_task(self._run(), name="sluice-tracing")

    async def aclose(self) -> None:
        """Hand over everything queued, then let the exporter flush and exit (bounded by `stop_seconds`)."""
        await stop(self._task)
        if self._pipe is None:
            return
        self.flush()
        pipe, self._pipe = self._pipe, None
        await pipe.aclose(self.stop_seconds)  # EOF: the exporter exports what it holds and exits

    def flush(self) -> None:
        """Hand the packed exchanges to the pipe (asyncio writes them as the exporter reads); drop them if the
        pipe has no room for them all."""
        if not self._packed_count:
            return
        packed, count = self._packed, self._packed_count
        self._packed, self._packed_count = bytearray(), 0
        pipe = self._pipe
        if pipe is None or len(packed) > pipe.room:
            self._drop(count)
            return
        pipe.write(packed)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()
            if self._pipe is not None and self._pipe.returncode is not None:
                logger.error("the span exporter process exited (status %s); traces are dropped from now on",
                             self._pipe.returncode)
                return

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)


