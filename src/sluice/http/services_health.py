"""`GET /health/services` (and `services_health_path:`): every service's instances and their states, each checked
now, concurrently, within its check's timeout, so one hung service never delays the answer beyond it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.principal import Principal
from sluice.readiness import NotReady, refusing
from sluice.routing.health import Probe
from sluice.services.registry import Service, instance_id

CHECK_SLACK_SECONDS = 0.5
"""Past its check's timeout, a service is reported as it stands rather than waited for."""


async def services_health(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes],
                          principal: Principal | None) -> bytes:
    """200 while every service has a usable instance (`ok`, or `degraded` when some instance is out); 503
    `down` with the same body when one has none."""
    registry = gateway.services
    services = list(registry.services.values()) if registry is not None else []
    reports = await asyncio.gather(*(_service(gateway, service) for service in services))
    states = [report["status"] for report in reports]
    status = "down" if "down" in states else "degraded" if "degraded" in states else "ok"
    body = {"status": status, "services": {service.name: report for service, report in zip(services, reports,
                                                                                           strict=True)}}
    if status == "down":
        raise NotReady({**body, "reasons": [f"service {service.name!r} has no usable instance"
                                            for service, report in zip(services, reports, strict=True)
                                            if report["status"] == "down"]})
    return orjson.dumps(body)


async def _service(gateway: Gateway, service: Service) -> dict[str, Any]:
    options = service.config.health_check
    probes: list[Probe] = []
    if options is not None and options.enabled:
        try:
            async with asyncio.timeout(options.timeout_seconds + CHECK_SLACK_SECONDS):
                probes = await gateway.health.check_service(service)
        except TimeoutError:
            probes = gateway.health.service_probes(service)
    by_endpoint = {endpoint: probe for probe in probes for _, endpoint in probe.endpoints}
    instances = []
    for endpoint in service.pool.endpoints:
        probe = by_endpoint.get(endpoint)
        check = endpoint.last_check if probe is not None else None
        usable = not refusing(endpoint) and not endpoint.draining
        instances.append({
            "id": instance_id(endpoint.target), "url": endpoint.target, "healthy": endpoint.healthy,
            "usable": usable, "draining": endpoint.draining, "in_flight": endpoint.in_flight,
            "check": None if check is None else {"result": check.result, "status": check.status,
                                                 "duration_ms": round(check.seconds * 1000, 3),
                                                 "error": check.error}})
    usable_count = sum(1 for endpoint in service.pool.endpoints if not refusing(endpoint) and not endpoint.draining)
    status = "down" if not usable_count else "ok" if usable_count == len(instances) else "degraded"
    return {"status": status, "instances": instances}
