"""Batches encoded spans and POSTs them to an OTLP/HTTP traces endpoint, from a thread of the span exporter.

This stands in for the SDK's `BatchSpanProcessor` and `OTLPSpanExporter`, whose span objects and encoder cost
more than the spans' content (`otlp_wire.py`). Batches go out at `batch_size` spans or `delay` seconds after their
first span (gzip-compressed if asked); a connection failure, 429, 502, 503 or 504 is retried twice with backoff,
then the batch is dropped and logged. `add` blocks while `max_queued` spans wait, so a slow collector backs up
into the gateway's pipe, where drops are counted (`sluice_telemetry_dropped_total{sink="traces"}`).
"""

from __future__ import annotations

import gzip
import http.client
import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sluice.telemetry import otlp_wire

logger = logging.getLogger("sluice.telemetry.span_worker")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_DELAYS = (0.5, 1.0)
_STOP = b""


class OtlpSender:
    """See the module docstring; `close` sends what is queued and stops the thread."""

    def __init__(self, url: str, headers: Mapping[str, str], resource: Mapping[str, Any], *, scope: str = "sluice",
                 batch_size: int = 512, delay: float = 1.0, timeout: float = 10.0, max_queued: int = 4096,
                 compress: bool = False) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.compress = compress
        self.headers = {"Content-Type": "application/x-protobuf", **headers}
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        self.resource = dict(resource)
        self.scope = scope
        self.batch_size = batch_size
        self.delay = delay
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[bytes] = queue.Queue(max_queued)
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="sluice-otlp-sender", daemon=True)
        self._thread.start()

    def add(self, span: bytes) -> None:
        """Queue one encoded span (`otlp_wire.span`)."""
        self._queue.put(span)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.delay
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            stopping = _STOP in batch
            batch = [span for span in batch if span]
            if batch:
                self._send(batch)
        if self._connection is not None:
            self._connection.close()

    def _send(self, spans: list[bytes]) -> None:
        body = otlp_wire.request(self.resource, self.scope, spans)
        if self.compress:
            body = gzip.compress(body, compresslevel=6)
        problem = ""
        for attempt in range(len(RETRY_DELAYS) + 1):
            if attempt:
                time.sleep(RETRY_DELAYS[attempt - 1])
            try:
                status, reply = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                self.sent += len(spans)
                return
            problem = f"HTTP {status}: {reply[:200]!r}"
            if status not in RETRY_STATUSES:
                break
        self.failed += len(spans)
        logger.warning("could not export %d spans to %s:%s%s (%s); dropped", len(spans), self.host, self.port,
                       self.path, problem)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=self.timeout)
        self._connection.request("POST", self.path, body, self.headers)
        response = self._connection.getresponse()
        reply = response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, reply

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
