"""The span exporter process: `python -m sluice.telemetry.span_worker`, started by `TracingObserver`.

Decoding an exchange, building its OpenInference attributes and encoding its spans costs tens of µs of CPU, so
it happens here, in a separate process at a low CPU priority (SCHED_IDLE by default): it cannot take the GIL
from a request, and on a saturated core the scheduler runs requests first (records then wait in the pipe, and
are dropped by the gateway when the pipe is full). Spans are encoded straight to OTLP protobuf (`otlp_wire.py`)
and sent by `otlp_sender.py`, in the way `phoenix.otel.register(protocol="http/protobuf", batch=True)` or the
SDK's OTLP/HTTP exporter would send them: the SDK's span objects and encoder cost ~0.3 ms per exchange.

Protocol on stdin: one line of JSON settings, then frames of a 4-byte big-endian length and a `marshal`led
record (`tracing.record_of`). EOF means shut down: the sender sends what it holds, then we exit.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.util.re import parse_env_headers

from sluice.serve.exchange_values import ExchangeValues, traced
from sluice.serve.frame_pipe import detach, lower_priority, read_frames
from sluice.store.options import redaction_config
from sluice.store.redaction import Redactor
from sluice.telemetry.logs import configure_logging
from sluice.telemetry.otlp_sender import OtlpSender
from sluice.telemetry.spans import SpanOptions, SpanWriter
from sluice.telemetry.trace_context import TraceIds

logger = logging.getLogger("sluice.telemetry.span_worker")
PROJECT_ATTRIBUTE = "openinference.project.name"
"""The resource attribute that puts spans in a Phoenix project."""


def resource_attributes(settings: dict[str, Any]) -> dict[str, Any]:
    """The SDK's resource (its defaults and OTEL_RESOURCE_ATTRIBUTES) with Sluice's name, version and project."""
    resource = Resource.create({"service.name": "sluice", "service.version": settings.get("version", ""),
                                PROJECT_ATTRIBUTE: settings["project"]})
    return dict(resource.attributes)


def export_headers(kind: str, found: dict[str, str | None]) -> dict[str, str]:
    """The headers `phoenix.otel.register()` (Phoenix) or the OTLP exporter (any collector) would send, from the
    environment values the gateway passed on (settings.py)."""
    if kind == "phoenix":
        headers = dict(parse_env_headers(found.get("phoenix") or found.get("otlp") or "", liberal=True))
        if found.get("api_key"):
            headers["authorization"] = f"Bearer {found['api_key']}"
        return headers
    return {**parse_env_headers(found.get("otlp") or "", liberal=True),
            **parse_env_headers(found.get("otlp_traces") or "", liberal=True)}


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (or the traces URL itself)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def exchange_of(record: tuple[Any, ...]) -> tuple[ExchangeValues, dict[str, str]]:
    """The exchange a record (`tracing.record_of`) carries, and its `session.id`/`user.id` attributes."""
    *values, trace, identity = record
    return traced(values, TraceIds(*trace) if trace is not None else None), identity


def main() -> None:
    detach()
    stdin = sys.stdin.buffer
    settings = json.loads(stdin.readline())
    configure_logging("json", level=logging.WARNING, stream=sys.stderr)
    lower_priority(settings.get("priority", 0))
    sender = OtlpSender(traces_url(settings["endpoint"]), export_headers(settings["kind"], settings.get("headers", {})),
                        resource_attributes(settings), compress=bool(settings.get("gzip")), tls=settings.get("tls"))
    writer = SpanWriter(sender.add, SpanOptions(
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
        sender.close()


if __name__ == "__main__":
    main()
