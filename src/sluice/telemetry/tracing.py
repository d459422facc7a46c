"""Tracing: where spans go (Phoenix, a generic OTLP collector, or nowhere) and the observer that ships them.

`TracingObserver.observe` only appends the exchange to a bounded queue. Every `FLUSH_SECONDS` a task on the
event loop packs the queued exchanges as compact `marshal` records (a few µs each) and writes them, without
blocking, into a pipe to the span exporter process (`span_worker.py`), which decodes bodies and streams,
builds the OpenInference spans with the OpenTelemetry SDK and exports them in batches. A slow or dead
collector, or a starved exporter process, only ever fills the pipe: records are then dropped and counted
(`sluice_telemetry_dropped_total{sink="traces"}`), and requests never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import marshal
import operator
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sluice.exchange import Exchange

logger = logging.getLogger("sluice.telemetry")

FLUSH_SECONDS = 0.05
MAX_QUEUED = 10_000
MAX_PENDING_BYTES = 16 * 1024 * 1024
PIPE_BYTES = 1024 * 1024
STOP_SECONDS = 10.0
RECORD_FIELDS = ("request_id", "endpoint", "method", "started_at", "operation", "key_id", "provider", "model",
                  "upstream_model", "project", "stream", "status", "request_body", "response_body", "chunks",
                  "latency_total", "latency_upstream", "time_to_first_token", "error", "error_type",
                  "error_code", "trace_id", "client_disconnected", "upstream_offset", "prompt_name",
                  "prompt_version", "prompt_template", "prompt_variables")
_fields_of = operator.attrgetter(*RECORD_FIELDS)


@dataclass(frozen=True)
class TraceExport:
    """Where spans go: Phoenix (`phoenix.otel.register()`) or any OTLP/HTTP collector, at `endpoint`."""

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
        self._queue: deque[Exchange] = deque()
        self._process: asyncio.subprocess.Process | None = None
        self._pipe: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    def observe(self, exchange: Exchange) -> None:
        if exchange.trace is None or not exchange.trace.sampled:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._drop(1)
            return
        self._queue.append(exchange)

    async def start(self) -> None:
        """Start the exporter process and the flushing task."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sluice.telemetry.span_worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL)
        self._pipe = self._process.stdin
        assert self._pipe is not None
        pipe = self._pipe.get_extra_info("pipe")
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._pipe.write(json.dumps(self.worker_settings).encode() + b"\n")
        self._task = asyncio.create_task(self._run(), name="sluice-tracing")

    async def aclose(self) -> None:
        """Hand over everything queued, then let the exporter flush and exit (bounded by `stop_seconds`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        process, pipe = self._process, self._pipe
        if process is None or pipe is None:
            return
        self.flush()
        self._process = self._pipe = None
        try:
            pipe.close()  # EOF: the exporter exports what it holds and exits
            await asyncio.wait_for(process.wait(), self.stop_seconds)
        except TimeoutError:
            logger.warning("the span exporter did not finish in %.0f s; stopping it", self.stop_seconds)
            process.kill()
            await process.wait()

    def flush(self) -> None:
        """Pack the queued exchanges and hand them to the pipe (asyncio writes them as the exporter reads)."""
        if not self._queue:
            return
        queue, self._queue = self._queue, deque()
        pipe = self._pipe
        if pipe is None or pipe.is_closing():
            self._drop(len(queue))
            return
        room = MAX_PENDING_BYTES - pipe.transport.get_write_buffer_size()
        frames = bytearray()
        for exchange in queue:
            if len(frames) >= room:
                self._drop(1)
                continue
            try:
                payload = marshal.dumps(record_of(exchange, self.identity_headers))
            except ValueError:
                logger.exception("could not pack exchange %s for tracing", exchange.request_id)
                continue
            frames += len(payload).to_bytes(4, "big")
            frames += payload
        if frames:
            pipe.write(frames)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()
            if self._process is not None and self._process.returncode is not None:
                logger.error("the span exporter process exited (status %s); traces are dropped from now on",
                             self._process.returncode)
                return

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)


