"""Active health checks: one background task per gateway process probes each configured (provider, check) at its
interval and takes the deployments it covers out of their pools, or brings them back (docs/reliability.md).

Deployments that share a provider and the same `health_check:` share one probe. Each process probes on its own
(as each keeps its own breakers); a probe carries the provider's credentials, which are never logged. A service
with `health_check:` has a probe per instance (`path` under the instance's URL), made as instances are added
through the admin API and dropped as they are removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Literal

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import RequestError, RequestTimeoutError

from sluice.config import MockProviderConfig, SluiceConfig
from sluice.providers.passthrough import PassthroughTarget
from sluice.routing.endpoint import Endpoint
from sluice.routing.options import HealthCheckOptions
from sluice.routing.table import RouteTable
from sluice.tasks import stop
from sluice.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from sluice.services.registry import Service, ServiceRegistry

logger = logging.getLogger("sluice.health")

Outcome = Literal["healthy", "unexpected_status", "timeout", "unreachable"]
"""A check's result (the `result` label of `sluice_health_checks_total`)."""
HEALTHY: Final = "healthy"
UNEXPECTED_STATUS: Final = "unexpected_status"
TIMEOUT: Final = "timeout"
UNREACHABLE: Final = "unreachable"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: when it ran (Unix time), what came back, how long it took."""

    at: float
    result: Outcome
    status: int | None
    seconds: float
    path: str
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.result == HEALTHY


@dataclass(slots=True)
class Probe:
    """One check of one provider and the deployments (model, endpoint) it takes out or brings back."""

    provider: str
    options: HealthCheckOptions
    url: str
    headers: list[tuple[str, str]]
    endpoints: list[tuple[str, Endpoint]] = field(default_factory=list)
    healthy: bool = True
    passes: int = 0
    """Consecutive passes, counted while unhealthy."""
    failures: int = 0
    """Consecutive failures, counted while healthy."""
    last: CheckResult | None = None
    instance: str | None = None
    """A service instance's URL (then `provider` is the service's name); None for a provider's probe."""
    running: asyncio.Task[CheckResult] | None = None
    """The check under way: another caller waits for it instead of probing again."""

    def record(self, result: CheckResult) -> bool:
        """Count `result` against the thresholds; True when it moved the probe (in or out)."""
        self.last = result
        if result.passed:
            self.failures = 0
            if self.healthy:
                return False
            self.passes += 1
            if self.passes < self.options.healthy_threshold:
                return False
            self.passes, self.healthy = 0, True
            return True
        self.passes = 0
        if not self.healthy:
            return False
        self.failures += 1
        if self.failures < self.options.unhealthy_threshold:
            return False
        self.failures, self.healthy = 0, False
        return True


def effective_check(config: SluiceConfig, provider: str, deployment: HealthCheckOptions | None
                    ) -> HealthCheckOptions | None:
    """The check that covers a deployment: its own `health_check:`, else its provider's; None when off."""
    entry = config.providers[provider]
    options = deployment if deployment is not None else \
        None if isinstance(entry, MockProviderConfig) else entry.health_check
    return options if options is not None and options.enabled else None


def build_probes(config: SluiceConfig, routes: RouteTable, targets: Mapping[str, PassthroughTarget | None]
                 ) -> list[Probe]:
    """A probe per distinct (provider, check) among the models' deployments, each knowing what it covers."""
    probes: dict[tuple[str, HealthCheckOptions], Probe] = {}
    for model, route in zip(config.models, routes.public, strict=True):
        for deployment, endpoint in zip(model.deployments, route.pool.endpoints, strict=True):
            options = effective_check(config, deployment.provider, deployment.health_check)
            target = targets.get(deployment.provider)
            if options is None or target is None:
                continue
            probe = probes.get((deployment.provider, options))
            if probe is None:
                suffix, _, query = options.path.partition("?")
                headers = list(target.credentials.items()) + list(target.defaults.items())
                probe = probes[deployment.provider, options] = Probe(
                    deployment.provider, options, target.url(suffix, query.encode("latin-1")), headers)
            probe.endpoints.append((route.name, endpoint))
    return list(probes.values())


class HealthChecker:
    """Runs the probes (`start`, `aclose`) and keeps each deployment's `healthy`, its `last_check` and the
    metrics up to date. With no check configured it does nothing: no task, no client."""

    def __init__(self, config: SluiceConfig, routes: RouteTable, targets: Mapping[str, PassthroughTarget | None],
                 metrics: Metrics, services: ServiceRegistry | None = None) -> None:
        self.probes = build_probes(config, routes, targets)
        self.services = services
        self._instance_probes: dict[Endpoint, Probe] = {}
        self._metrics = metrics
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        for model, endpoint in routes.endpoints():
            metrics.deployment_healthy.labels(model, endpoint.id).set(1)
        for probe in self.probes:
            metrics.health_check_status.labels(probe.provider, probe.options.path, "", "").set(1)

    def checked_services(self) -> list[Service]:
        """The services whose instances are checked (`health_check:` set and enabled)."""
        if self.services is None:
            return []
        return [service for service in self.services.services.values()
                if service.config.health_check is not None and service.config.health_check.enabled]

    def service_probes(self, service: Service) -> list[Probe]:
        """A probe per instance the service has now (none without `health_check:`)."""
        options = service.config.health_check
        if options is None or not options.enabled:
            return []
        probes = []
        for endpoint in service.pool.endpoints:
            probe = self._instance_probes.get(endpoint)
            if probe is None:
                probe = self._instance_probes[endpoint] = Probe(
                    service.name, options, endpoint.target + options.path, [], [(service.name, endpoint)],
                    healthy=endpoint.healthy, instance=endpoint.target)
                self._metrics.health_check_status.labels("", options.path, service.name, endpoint.target).set(
                    1 if endpoint.healthy else 0)
            probes.append(probe)
        return probes

    async def check_service(self, service: Service) -> list[Probe]:
        """Check each instance of `service` once now, concurrently (each within its timeout)."""
        probes = self.service_probes(service)
        if self._client is not None:
            await asyncio.gather(*(self.check(probe) for probe in probes))
        return probes

    async def start(self) -> None:
        """Start probing (the first round at once; deployments count as healthy until a check says otherwise)."""
        checked = self.checked_services()
        if not self.probes and not checked:
            return
        self._client = (
            ClientBuilder()
            .max_connections(max(4, 2 * (len(self.probes) + sum(len(s.pool.endpoints) for s in checked))))
            .error_for_status(False)
            .follow_redirects(False)  # a redirect is an unexpected status, as for Envoy
            .pool_max_idle_per_host(2)
            .build()
        )
        self._task = asyncio.create_task(self._run(), name="sluice-health-checks")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def check_now(self) -> list[Probe]:
        """Run every probe once now (`POST /admin/health/check`) and return them."""
        if self._client is not None:
            await asyncio.gather(*(self.check(probe) for probe in self.probes))
        return self.probes

    async def check(self, probe: Probe) -> CheckResult:
        """Probe once (or join the check under way), record the result and apply it to what the probe covers."""
        running = probe.running
        if running is None:
            running = probe.running = asyncio.create_task(self._check(probe))
            running.add_done_callback(lambda _: setattr(probe, "running", None))
        return await asyncio.shield(running)

    async def _check(self, probe: Probe) -> CheckResult:
        result = await self._probe(probe)
        self._metrics.health_checks.labels(probe.provider, probe.options.path, result.result).inc()
        moved = probe.record(result)
        for model, endpoint in probe.endpoints:
            endpoint.last_check = result
            if moved:
                endpoint.healthy = probe.healthy
                if probe.instance is None:
                    self._metrics.deployment_healthy.labels(model, endpoint.id).set(1 if probe.healthy else 0)
        if moved:
            status = self._metrics.health_check_status
            gauge = status.labels(probe.provider, probe.options.path, "", "") if probe.instance is None else \
                status.labels("", probe.options.path, probe.provider, probe.instance)
            gauge.set(1 if probe.healthy else 0)
            _log_move(probe, result)
        return result

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as probes:
            for probe in self.probes:
                probes.create_task(self._loop(probe))
            for service in self.checked_services():
                probes.create_task(self._service_loop(service))

    async def _service_loop(self, service: Service) -> None:
        """Every interval, each instance the service has then (added and removed ones followed)."""
        options = service.config.health_check
        assert options is not None
        while True:
            started = time.monotonic()
            try:
                await self.check_service(service)
                alive = set(service.pool.endpoints)
                for endpoint in [e for e, p in self._instance_probes.items() if p.provider == service.name
                                 and e not in alive]:
                    del self._instance_probes[endpoint]
            except Exception:  # a bug here must not stop the other probes, nor this one for good
                logger.exception("health check of service %r failed unexpectedly", service.name)
            await asyncio.sleep(max(0.0, options.interval_seconds - (time.monotonic() - started)))

    async def _loop(self, probe: Probe) -> None:
        interval = probe.options.interval_seconds
        while True:
            started = time.monotonic()
            try:
                await self.check(probe)
            except Exception:  # a bug here must not stop the other probes, nor this one for good
                logger.exception("health check of provider %r failed unexpectedly", probe.provider)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _probe(self, probe: Probe) -> CheckResult:
        options = probe.options
        client = self._client
        assert client is not None
        at, started = time.time(), time.perf_counter()
        status: int | None = None
        try:
            async with asyncio.timeout(options.timeout_seconds + 1.0):  # the client's own timeout comes first
                reply = await client.request(options.method, probe.url).headers(probe.headers) \
                    .timeout(timedelta(seconds=options.timeout_seconds)).build().send()
                status = reply.status
                await reply.bytes()  # read to the end, so the connection is kept for the next check
        except (RequestTimeoutError, TimeoutError):
            return CheckResult(at, TIMEOUT, status, time.perf_counter() - started, options.path,
                               f"no answer within {options.timeout_seconds:g} s")
        except RequestError as exc:
            return CheckResult(at, UNREACHABLE, None, time.perf_counter() - started, options.path,
                               f"could not be reached: {type(exc).__name__}")
        seconds = time.perf_counter() - started
        if status not in options.expected_status:
            expected = ", ".join(map(str, options.expected_status))
            return CheckResult(at, UNEXPECTED_STATUS, status, seconds, options.path,
                               f"answered HTTP {status} (expected {expected})")
        return CheckResult(at, HEALTHY, status, seconds, options.path)


def _log_move(probe: Probe, result: CheckResult) -> None:
    deployments = ", ".join(sorted({endpoint.id for _, endpoint in probe.endpoints}))
    where = f"{probe.options.method} {probe.options.path} of provider {probe.provider!r}" if probe.instance is None \
        else f"{probe.options.method} {probe.instance}{probe.options.path} of service {probe.provider!r}"
    if probe.healthy:
        logger.info("health check passed again: %s; back in rotation: %s", where, deployments)
    else:
        logger.warning("health check failed: %s %s; taken out of rotation: %s", where, result.error, deployments)


def covered(probes: Sequence[Probe]) -> dict[Endpoint, Probe]:
    """The probe covering each endpoint that has one (for the admin view)."""
    return {endpoint: probe for probe in probes for _, endpoint in probe.endpoints}
