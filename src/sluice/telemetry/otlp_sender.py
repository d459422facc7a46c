"""Batches encoded spans and POSTs them to an OTLP/HTTP traces endpoint, from a thread of the span exporter.

This stands in for the SDK's `BatchSpanProcessor` and `OTLPSpanExporter`, whose span objects and encoder cost
more than the spans' content (`otlp_wire.py`). As the processor does, batches go out every `delay` seconds or as
soon as `batch_size` spans wait (gzip-compressed if asked); a connection failure, 429, 502, 503 or 504 is retried
twice with backoff, then the batch is dropped and logged. `add` blocks while `max_queued` spans wait, so a slow
collector backs up into the gateway's pipe, where drops are counted (`sluice_telemetry_dropped_total{sink="traces"}`).

`add` only appends to a list under a lock: the sending thread is woken once per batch, not per span (a
`queue.Queue` woke it for every span, a GIL hand-off each, ~10 µs of the exporter's ~65 per chat exchange).
"""

from __future__ import annotations

import gzip
import http.client
import logging
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sluice.telemetry import otlp_wire

logger = logging.getLogger("sluice.telemetry.span_worker")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_DELAYS = (0.5, 1.0)


class OtlpSender:
    """See the module docstring; `close` sends what is queued and stops the thread."""

    def __init__(self, url: str, headers: Mapping[str, str], resource: Mapping[str, Any], *, scope: str = "sluice",
                 batch_size: int = 512, delay: float = 1.0, timeout: float = 10.0, max_queued: int = 4096,
                 compress: bool = False, tls: Mapping[str, str | None] | None = None) -> None:
        """`tls`: the `tls_context` files for an https collector (`Settings.otlp_tls`)."""
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.context = tls_context(**tls) if self.https and tls and any(tls.values()) else None
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
        self.max_queued = max_queued
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._batch_ready = threading.Event()
        self._stopping = False
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="sluice-otlp-sender", daemon=True)
        self._thread.start()

    def add(self, span: bytes) -> None:
        """Queue one encoded span (`otlp_wire.span`); waits while `max_queued` are queued."""
        with self._lock:
            while len(self._pending) >= self.max_queued and not self._stopping:
                self._room.wait()
            self._pending.append(span)
            if len(self._pending) == self.batch_size:
                self._batch_ready.set()

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued, then stop the thread (waiting at most `timeout` seconds)."""
        with self._lock:
            self._stopping = True
            self._room.notify_all()
        self._batch_ready.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            full = self._batch_ready.wait(self.delay)
            self._batch_ready.clear()
            with self._lock:
                stopping = self._stopping
                # Woken by a full batch: whole batches go, the rest waits to fill the next one.
                taken = len(self._pending) if stopping or not full else (
                    len(self._pending) // self.batch_size * self.batch_size)
                spans, self._pending = self._pending[:taken], self._pending[taken:]
                self._room.notify_all()
            for start in range(0, len(spans), self.batch_size):
                self._send(spans[start:start + self.batch_size])
            if stopping:
                break
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
            if self.https:
                self._connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                               context=self.context)
            else:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
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


def tls_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """The TLS settings of an https export, as the OTLP exporter's environment gives them: `ca` verifies the
    collector (else the system's CAs), `cert` (and `key`, unless it is in the same file) is presented to it."""
    if key and not cert:
        raise ValueError("a client key needs its client certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)")
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context

