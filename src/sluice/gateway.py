"""The Gateway: owns the providers, the model table and the key ring; it is what the routes call."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from sluice.config import SluiceConfig
from sluice.exchange import Observer
from sluice.keys.static import StaticKeyRing, scoped_keys
from sluice.prompts import PromptRegistry
from sluice.providers.passthrough import build_targets
from sluice.providers.registry import build_providers
from sluice.routing.table import RouteTable
from sluice.settings import Settings
from sluice.store.request_log import RequestLog
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.observers import Telemetry


class Gateway:
    """Everything a request needs, built once from config at start-up."""

    def __init__(self, config: SluiceConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.version = version("sluice")
        self.started_at = int(time.time())
        self.providers = build_providers(config)
        self.routes = RouteTable(config, self.providers)
        self.prompts = PromptRegistry.load(config.prompts, config.prompts_dir)
        self.passthrough = build_targets(config)
        self.keys = StaticKeyRing((key.get_secret_value() for key in settings.api_keys),
                                  allow_no_auth=settings.allow_no_auth, scoped=scoped_keys(config.static_keys))
        self.metrics = Metrics(settings.prometheus_multiproc_dir)
        self.request_log = RequestLog(config.request_log, settings, self.metrics) \
            if config.request_log.enabled else None
        self.observers: list[Observer] = [self.request_log] if self.request_log is not None else []
        self.telemetry = Telemetry(config, settings, self.metrics, self.version)
        self.observers.extend(self.telemetry.observers)
        self.tracing = self.telemetry.tracing is not None
        """Whether the request path should choose trace ids (`TraceIds`) and send them upstream."""
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        for target in self.passthrough.values():
            if target is not None:
                await target.start()
        if self.request_log is not None:
            await self.request_log.start()
        await self.telemetry.start()

    async def aclose(self) -> None:
        """Wait (bounded by the grace period) for in-flight requests, then close every upstream pool."""
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.server.shutdown_grace_seconds)
        except TimeoutError:
            pass
        for provider in self.providers.values():
            await provider.aclose()
        for target in self.passthrough.values():
            if target is not None:
                await target.aclose()
        if self.request_log is not None:
            await self.request_log.aclose()
        await self.telemetry.aclose()

    def request_started(self) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()
        if self.in_flight == 0:
            self._idle.set()
