"""The Gateway: owns the providers, the model table and the key ring; it is what the routes call."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from sluice.config import SluiceConfig
from sluice.keys.static import StaticKeyRing
from sluice.providers.registry import build_providers
from sluice.routing.table import RouteTable
from sluice.settings import Settings
from sluice.telemetry.metrics import Metrics


class Gateway:
    """Everything a request needs, built once from config at start-up."""

    def __init__(self, config: SluiceConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.version = version("sluice")
        self.started_at = int(time.time())
        self.providers = build_providers(config)
        self.routes = RouteTable(config, self.providers)
        self.keys = StaticKeyRing((key.get_secret_value() for key in settings.api_keys),
                                  allow_no_auth=settings.allow_no_auth)
        self.metrics = Metrics()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()

    async def aclose(self) -> None:
        """Wait (bounded by the grace period) for in-flight requests, then close every upstream pool."""
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.server.shutdown_grace_seconds)
        except TimeoutError:
            pass
        for provider in self.providers.values():
            await provider.aclose()

    def request_started(self) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()
        if self.in_flight == 0:
            self._idle.set()
