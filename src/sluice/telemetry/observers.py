"""The gateway's telemetry observers, built once from config and settings: metrics always, traces when an
endpoint is set (`PHOENIX_COLLECTOR_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sluice.config import SluiceConfig
from sluice.exchange import Observer
from sluice.pricing import PriceTable
from sluice.settings import Settings
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.request_metrics import MetricsObserver
from sluice.telemetry.tracing import TraceExport, TracingObserver, trace_export


class Telemetry:
    """Owns the metrics and tracing observers and their background work."""

    def __init__(self, config: SluiceConfig, settings: Settings, metrics: Metrics, version: str,
                 prices: PriceTable | None = None) -> None:
        self.metrics = MetricsObserver(metrics, prices)
        self.export = trace_export(settings.phoenix_collector_endpoint, settings.otel_exporter_otlp_endpoint)
        self.tracing: TracingObserver | None = None
        if self.export is not None:
            dropped = metrics.telemetry_dropped.labels("traces")
            self.tracing = TracingObserver(worker_settings(config, settings, self.export, version),
                                           identity_headers(config), on_drop=dropped.inc)
        self.observers: list[Observer] = [self.metrics, *([self.tracing] if self.tracing is not None else [])]

    async def start(self) -> None:
        await self.metrics.start()
        if self.tracing is not None:
            await self.tracing.start()

    async def aclose(self) -> None:
        await self.metrics.aclose()
        self.metrics.metrics.close()
        if self.tracing is not None:
            await self.tracing.aclose()


def identity_headers(config: SluiceConfig) -> dict[bytes, str]:
    """Request header name (lower-case bytes) → the span attribute its value becomes."""
    telemetry = config.telemetry
    found = {telemetry.session_header: "session.id", telemetry.user_header: "user.id"}
    return {name.lower().encode("latin-1"): attribute for name, attribute in found.items() if name}


def worker_settings(config: SluiceConfig, settings: Settings, export: TraceExport, version: str) -> dict[str, Any]:
    """Everything the span exporter process needs, as JSON-able values."""
    telemetry = config.telemetry
    redaction = config.request_log.redaction
    return {
        "kind": export.kind,
        "endpoint": export.endpoint,
        "project": telemetry.project,
        "version": version,
        "priority": telemetry.exporter_nice if telemetry.exporter_nice is not None else telemetry.exporter_priority,
        "provider_types": {name: provider.type for name, provider in config.providers.items()},
        "hide_inputs": telemetry.hide_inputs or settings.openinference_hide_inputs,
        "hide_outputs": telemetry.hide_outputs or settings.openinference_hide_outputs,
        "redaction": asdict(redaction),
        "headers": {"api_key": settings.phoenix_api_key, "phoenix": settings.phoenix_client_headers,
                    "otlp": settings.otel_exporter_otlp_headers,
                    "otlp_traces": settings.otel_exporter_otlp_traces_headers},
        "gzip": (settings.otel_exporter_otlp_traces_compression or settings.otel_exporter_otlp_compression) == "gzip",
        "tls": settings.otlp_tls,
    }
