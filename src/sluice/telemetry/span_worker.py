"""The span exporter process: `python -m sluice.telemetry.span_worker`, started by `TracingObserver`.

Building and encoding OpenTelemetry spans costs ~0.3 ms of CPU per request with the Python SDK, twice what
Sluice's whole hot path costs, so it happens here, in a separate process at a low CPU priority (SCHED_IDLE by
default): it cannot take the GIL from a request, and on a saturated core the scheduler runs requests first
(records then wait in the pipe, and are dropped by the gateway when the pipe is full).

Protocol on stdin: one line of JSON settings, then frames of a 4-byte big-endian length and a `marshal`led
record (`tracing.record_of`). EOF means shut down: the batch processor flushes what it holds, then we exit.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from sluice.exchange import Exchange
from sluice.frame_pipe import lower_priority, read_frames
from sluice.store.options import redaction_config
from sluice.store.redaction import Redactor
from sluice.telemetry.logs import configure_logging
from sluice.telemetry.spans import PresetIds, SpanOptions, SpanWriter
from sluice.telemetry.trace_context import TraceIds
from sluice.telemetry.tracing import RECORD_FIELDS

logger = logging.getLogger("sluice.telemetry.span_worker")


def build_provider(settings: dict[str, Any], ids: PresetIds) -> TracerProvider:
    """Phoenix through `phoenix.otel.register()`, or a plain OTLP/HTTP exporter; batched either way."""
    resource = Resource.create({"service.name": "sluice", "service.version": settings.get("version", ""),
                                "openinference.project.name": settings["project"]})
    endpoint = traces_url(settings["endpoint"])
    if settings["kind"] == "phoenix":
        from phoenix.otel import register

        provider: TracerProvider = register(
            endpoint=endpoint, project_name=settings["project"], batch=True, protocol="http/protobuf",
            set_global_tracer_provider=False, auto_instrument=False, verbose=False, resource=resource,
            id_generator=ids,
        )
        return provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=resource, id_generator=ids)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (or the traces URL itself)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def exchange_of(record: tuple[Any, ...]) -> tuple[Exchange, dict[str, str]]:
    """The exchange a record (`tracing.record_of`) carries, and its `session.id`/`user.id` attributes."""
    *values, trace, identity = record
    exchange = Exchange(**dict(zip(RECORD_FIELDS, values, strict=True)))
    exchange.chunks = list(exchange.chunks)
    exchange.trace = TraceIds(*trace)
    return exchange, identity


def main() -> None:
    stdin = sys.stdin.buffer
    settings = json.loads(stdin.readline())
    configure_logging("json", level=logging.WARNING, stream=sys.stderr)
    lower_priority(settings.get("priority", 0))
    ids = PresetIds()
    provider = build_provider(settings, ids)
    writer = SpanWriter(provider, ids, SpanOptions(
        provider_types=settings.get("provider_types", {}), hide_inputs=bool(settings.get("hide_inputs")),
        hide_outputs=bool(settings.get("hide_outputs")),
        redactor=Redactor(redaction_config(settings["redaction"])) if settings.get("redaction") else None,
    ))
    try:
        for record in read_frames(stdin):
            try:
                exchange, identity = exchange_of(record)
                writer.write(exchange, identity)
            except Exception:
                logger.exception("could not build the spans of one exchange")
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
