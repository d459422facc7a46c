"""`GET /admin/health`: every model's deployments as routing sees them (health checks, breaker, load, latency);
`POST /admin/health/check` runs the active health checks now. Admins only; this process's view."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from sluice.gateway import Gateway
from sluice.http.admin_auth import AdminAccess
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit
from sluice.readiness import DatabaseState, refusing
from sluice.routing.breaker import OPEN, STATE_NAMES
from sluice.routing.endpoint import Endpoint
from sluice.routing.health import Outcome, Probe, covered

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])


class LastCheck(BaseModel):
    at: datetime
    result: Outcome
    status: int | None
    """The HTTP status the upstream answered (None: no answer)."""
    duration_ms: float
    path: str
    error: str | None


class BreakerView(BaseModel):
    state: str
    """closed, half_open or open."""
    retry_in_seconds: float
    """While open: seconds until a request may probe the deployment again (0 otherwise)."""


class DeploymentHealth(BaseModel):
    id: str
    """`provider/upstream model`, as `X-Sluice-Deployment` says."""
    provider: str
    model: str
    """The upstream's name for the model."""
    healthy: bool
    """False while its active health checks take it out."""
    usable: bool
    """Healthy and its breaker not refusing calls (its own per-minute limits aside)."""
    health_check: str | None
    """The check that covers it (`GET /models`), or None when it has none."""
    breaker: BreakerView | None
    in_flight: int
    latency_ms: float | None
    """Moving average of its time to answer (or to a stream's first bytes); None until a call finished."""
    last_error: str | None
    """The error of its last failed call."""
    last_check: LastCheck | None


class ModelHealth(BaseModel):
    name: str
    serving: bool
    """Whether any deployment is usable."""
    deployments: list[DeploymentHealth]


class DatabaseHealth(BaseModel):
    state: DatabaseState
    error: str | None


class HealthReport(BaseModel):
    object: Literal["health"] = "health"
    status: Literal["ready", "not_ready"]
    """What `GET /health/ready` answers now (200 for ready, 503 otherwise)."""
    reasons: list[str]
    database: DatabaseHealth
    models: list[ModelHealth]


@router.get("/health", response_model=HealthReport)
async def health(gateway: CurrentGateway) -> HealthReport:
    """Every model's deployments: health checks, breaker, calls in flight, latency, last error, last check."""
    return await _report(gateway)


@router.post("/health/check", response_model=HealthReport)
async def check_now(gateway: CurrentGateway) -> HealthReport:
    """Run every active health check once now (each within its timeout), then report as `GET /admin/health`."""
    await gateway.health.check_now()
    return await _report(gateway)


async def _report(gateway: Gateway) -> HealthReport:
    ready = await gateway.readiness.report()
    probes = covered(gateway.health.probes)
    models = []
    for route in gateway.routes.public:
        deployments = [_deployment(endpoint, probes.get(endpoint)) for endpoint in route.pool.endpoints]
        models.append(ModelHealth(name=route.name, serving=any(d.usable for d in deployments),
                                  deployments=deployments))
    database = gateway.readiness.database
    return HealthReport(status=ready["status"], reasons=ready["reasons"],
                        database=DatabaseHealth(state=ready["database"], error=database.error), models=models)


def _deployment(endpoint: Endpoint, probe: Probe | None) -> DeploymentHealth:
    breaker = endpoint.guard.breaker
    view = None
    if breaker is not None:
        wait = max(0.0, breaker.retry_at - time.monotonic()) if breaker.state == OPEN else 0.0
        view = BreakerView(state=STATE_NAMES[breaker.state], retry_in_seconds=round(wait, 3))
    check = endpoint.last_check
    last = None if check is None else LastCheck(
        at=datetime.fromtimestamp(check.at, UTC), result=check.result, status=check.status,
        duration_ms=round(check.seconds * 1000, 3), path=check.path, error=check.error)
    return DeploymentHealth(
        id=endpoint.id, provider=endpoint.owner, model=endpoint.target, healthy=endpoint.healthy,
        usable=not refusing(endpoint),
        health_check=None if probe is None else f"{probe.options.method} {probe.options.path}",
        breaker=view, in_flight=endpoint.in_flight,
        latency_ms=None if endpoint.latency is None else round(endpoint.latency * 1000, 3),
        last_error=endpoint.last_error, last_check=last)
