"""The Gateway: owns the providers, the model table and the key ring; it is what the routes call."""

from __future__ import annotations

import asyncio
import logging
import time
from importlib.metadata import version
from typing import TYPE_CHECKING

from sluice.config import SluiceConfig
from sluice.exchange import Observer
from sluice.frontdoors.responses_store import ResponseStore
from sluice.http.body_clock import BodyClock
from sluice.keys.ring import build_key_ring
from sluice.limits.budgets import build_ledger
from sluice.limits.build import build_admission
from sluice.pipeline.stream_cutoff import StreamCutoff
from sluice.pricing import PriceTable
from sluice.prompts import PromptRegistry
from sluice.providers.passthrough import build_targets
from sluice.providers.registry import build_providers
from sluice.readiness import Readiness
from sluice.routing.cache import build_cache
from sluice.routing.guard import build_guards
from sluice.routing.health import HealthChecker
from sluice.routing.table import RouteTable
from sluice.settings import Settings
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.observers import Telemetry

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.prompts_store import PromptStore
    from sluice.routing.breaker_sync import BreakerSync
    from sluice.services.registry import ServiceRegistry
    from sluice.store.request_log import RequestLog

logger = logging.getLogger("sluice.gateway")


class Gateway:
    """Everything a request needs, built once from config at start-up."""

    def __init__(self, config: SluiceConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.version = version("sluice")
        self.started_at = int(time.time())
        self.providers = build_providers(config)
        self.metrics = Metrics(settings.prometheus_multiproc_dir)
        self.routes = RouteTable(config, self.providers, self.metrics)
        """Each public model's pool of deployments and its fallbacks (routing/table.py)."""
        self.prompts = PromptRegistry.load(config.prompts, config.prompts_dir)
        self.prompt_store: PromptStore | None = None
        """Templates added through /admin/prompts; set once the request log's database is open."""
        self.responses = ResponseStore(self)
        """The `/v1/responses` answers kept for `previous_response_id` (frontdoors/responses_store.py)."""
        self.passthrough = build_targets(config)
        self.services = _services(config, self.metrics)
        """The service gateway's services and route rules (services/registry.py); None without `routes:`."""
        self.keys = build_key_ring(config, settings)
        self.guards = build_guards(config, self.providers, self.metrics)
        """Each provider's circuit breaker and retry policy for its passthrough requests, by provider name."""
        self.health = HealthChecker(config, self.routes, self.passthrough, self.metrics, self.services)
        """Active health checks of the deployments whose provider or deployment sets `health_check:`."""
        self.prices = PriceTable(config.prices)
        """USD per million tokens (defaults + `prices:`): the request log's cost, the cost metric, budgets."""
        self.request_log = _request_log(config, settings, self.metrics, self.prices)
        self.observers: list[Observer] = [self.request_log] if self.request_log is not None else []
        self.budgets = build_ledger(config, settings, self.metrics, self.prices,
                                    self.request_log.db if self.request_log is not None else None)
        """Spend per key and period: charged by its observer, checked before a request of a key with a budget."""
        self.observers.append(self.budgets)
        self.readiness = Readiness(self.routes, self.request_log, self.keys, settings.redis_url,
                                   config.limits.on_backend_failure == "closed")
        """What `/health/ready` answers: a model that can serve, and the database the config needs."""
        self.body_clock = BodyClock(config.limits.body_read_timeout_seconds)
        self.admission = build_admission(config, settings.redis_url, self.metrics, self.budgets)
        """Rate, concurrency and budget limits checked before a request goes upstream (limits/admission.py)."""
        self.breaker_sync = _breaker_sync(config, settings, self.routes)
        """Shares the deployments' breakers through Redis when it is configured (routing/breaker_sync.py)."""
        self.observers.append(self.admission.tokens)
        self.cache = build_cache(config, settings.redis_url, self.metrics)
        """The response cache of the models with `cache:` (routing/cache.py); None when no model has one."""
        self.telemetry = Telemetry(config, settings, self.metrics, self.version, self.prices)
        self.observers.extend(self.telemetry.observers)
        self.request_observers: list[Observer] = [self.telemetry.tracing] if self.telemetry.tracing is not None else []
        """Who sees a request that makes its upstream calls through child flows (a project route): its server span."""
        self.tracing = self.telemetry.tracing is not None
        """Whether the request path should choose trace ids (`TraceIds`) and send them upstream."""
        self.in_flight = 0
        self.metrics.requests_in_flight = lambda: self.in_flight
        self.closing = asyncio.Event()
        self.streams = StreamCutoff()
        """The streams being relayed: ended with an error event if this worker stops before they finish."""
        """Set when the gateway starts to stop: long-lived connections (WebSockets) end instead of holding it."""
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        for target in self.passthrough.values():
            if target is not None:
                await target.start()
        if self.services is not None:
            await self.services.start()
        if self.request_log is not None:
            await self.request_log.start()
            if self.request_log.db is not None:
                from sluice.prompts_store import PromptStore

                self.prompt_store = PromptStore(self.prompts, self.request_log.db)
                await self.prompt_store.start()
        if self.services is not None:  # the admin API's instance changes, over sluice.yaml (services/store.py)
            await self.services.watch(await self._shared_database())
        await self.budgets.start()
        await self.admission.limiter.start()
        await self.telemetry.start()
        if self.breaker_sync is not None:
            await self.breaker_sync.start()
        await self.health.start()

    async def _shared_database(self) -> Database | None:
        """The database every instance shares for what the admin API changes: the request log's, else the managed
        keys' (the same `SLUICE_DATABASE_URL`, opened now); None without either, or when it cannot be opened
        (then changes stay in this process, and a warning says so)."""
        if self.request_log is not None and self.request_log.db is not None:
            return self.request_log.db
        if self.keys.managed is None:
            return None
        try:
            return (await self.keys.store()).db
        except Exception as exc:  # noqa: BLE001 - a store that cannot open (503): serve, without sharing
            logger.warning("service instance changes stay in this process: the database did not open (%s)", exc)
            return None

    async def aclose(self) -> None:
        """Wait (bounded by the grace period) for in-flight requests, then close every upstream pool."""
        self.closing.set()
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.server.shutdown_grace_seconds)
        except TimeoutError:
            pass
        await self.health.aclose()
        await self.readiness.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        for target in self.passthrough.values():
            if target is not None:
                await target.aclose()
        if self.services is not None:
            await self.services.aclose()
        await self.budgets.aclose()
        await self.admission.limiter.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.prompt_store is not None:
            await self.prompt_store.aclose()
        if self.request_log is not None:
            await self.request_log.aclose()
        await self.telemetry.aclose()
        await self.keys.aclose()
        if self.breaker_sync is not None:
            await self.breaker_sync.aclose()

    def request_started(self) -> None:
        self.in_flight += 1  # shown by the in-flight gauge at the metrics' next flush (Metrics.flush)
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()


def _request_log(config: SluiceConfig, settings: Settings, metrics: Metrics, prices: PriceTable) -> RequestLog | None:
    """The request log if the config enables it. Imported only then: with it, SQLAlchemy (~16 MB a worker); the
    key ring and the spend ledger open their database on first use, so a gateway without these features never
    loads it."""
    if not config.request_log.enabled:
        return None
    from sluice.store.request_log import RequestLog

    return RequestLog(config.request_log, settings, metrics, prices)


def _breaker_sync(config: SluiceConfig, settings: Settings, routes: RouteTable) -> BreakerSync | None:
    """The Redis sync of the deployments' breakers, when Redis is configured for the limits too."""
    if not settings.redis_url or config.limits.backend == "memory":
        return None
    breakers = [endpoint.guard.breaker for _, endpoint in routes.endpoints() if endpoint.guard.breaker is not None]
    if not breakers:
        return None
    from sluice.routing.breaker_sync import BreakerSync

    limits = config.limits
    return BreakerSync(settings.redis_url, limits.redis_prefix, max(limits.redis_timeout_seconds, 0.5), breakers)


def _services(config: SluiceConfig, metrics: Metrics) -> ServiceRegistry | None:
    """The service registry when the config routes to services (imported only then)."""
    if not config.routes:
        return None
    from sluice.services.registry import ServiceRegistry
    from sluice.services.rules import RuleTable

    return ServiceRegistry(config.services, RuleTable(config.routes), metrics)
