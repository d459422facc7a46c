"""`/admin/services` and `/admin/routes`: the service gateway's instances as routing sees them, changed while
running (add, remove, drain, restore: stored, seen by every process within seconds), checked now; the route table
in match order. Admins only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from sluice.errors import GatewayError
from sluice.gateway import Gateway
from sluice.http.admin_audit import record
from sluice.http.admin_auth import AdminAccess, CurrentAdmin
from sluice.http.admin_health import DeploymentHealth, _deployment
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit
from sluice.http.openapi import error_responses
from sluice.keys.principal import Principal
from sluice.routing.endpoint import Endpoint
from sluice.routing.health import covered
from sluice.services.changes import Change
from sluice.services.registry import Service, ServiceRegistry, instance_id

if TYPE_CHECKING:
    from sluice.services.store import ServiceStore  # SQLAlchemy: only once a database is used

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])


class InstanceView(DeploymentHealth):
    instance_id: str
    """The id the instance routes take (`/admin/services/{name}/instances/{instance_id}`)."""
    url: str
    weight: float
    draining: bool
    """Drained: offered no new request; its requests in flight finish."""


class ServiceView(BaseModel):
    name: str
    strategy: str
    serving: bool
    """Whether any instance is usable (healthy, not drained, breaker not refusing)."""
    health_check: str | None
    instances: list[InstanceView]


class ServiceList(BaseModel):
    object: str = "list"
    data: list[ServiceView]


class NewInstance(BaseModel):
    url: str = Field(pattern=r"^https?://")
    weight: float = Field(1.0, gt=0)


class RouteList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]]
    """The rules in match order (most specific first; ties in config order)."""


@router.get("/services", response_model=ServiceList, responses=error_responses(e404="The gateway has no services"))
async def list_services(gateway: CurrentGateway) -> ServiceList:
    """Every service and its instances: health, breaker, in flight, latency, draining."""
    registry = _registry(gateway)
    return ServiceList(data=[_view(gateway, service) for service in registry.services.values()])


@router.get("/services/{name}", response_model=ServiceView)
async def get_service(name: str, gateway: CurrentGateway) -> ServiceView:
    return _view(gateway, _service(gateway, name))


@router.post("/services/{name}/instances", response_model=ServiceView, status_code=201)
async def add_instance(name: str, instance: NewInstance, gateway: CurrentGateway,
                       admin: CurrentAdmin) -> ServiceView:
    """Add an instance (or change the weight of one the service has); stored, seen by every process."""
    service = _service(gateway, name)
    await _store(gateway).put(name, instance.url, Change(weight=instance.weight))
    await record(gateway, admin, "service.instance.add", f"{name}/{instance.url}", {"weight": instance.weight})
    return _view(gateway, service)


@router.delete("/services/{name}/instances/{id_}", response_model=ServiceView,
                responses=error_responses(e409="The service's last instance"))
async def remove_instance(name: str, id_: str, gateway: CurrentGateway, admin: CurrentAdmin) -> ServiceView:
    """Remove an instance (one of sluice.yaml's too): it gets no new request, its requests in flight finish."""
    service = _service(gateway, name)
    endpoint = _instance(service, id_)
    if len(service.pool.endpoints) == 1:
        raise GatewayError(f"Instance {id_!r} is the last of service {name!r}; add another first.", status=409,
                           type="invalid_request_error", code="last_instance")
    await _store(gateway).put(name, endpoint.target, Change(removed=True))
    await record(gateway, admin, "service.instance.remove", f"{name}/{endpoint.target}", {"removed": True})
    return _view(gateway, service)


@router.post("/services/{name}/instances/{id_}/drain", response_model=ServiceView)
async def drain_instance(name: str, id_: str, gateway: CurrentGateway, admin: CurrentAdmin) -> ServiceView:
    """Offer the instance no new request; those in flight finish (`in_flight` shows them)."""
    return await _set_draining(gateway, admin, name, id_, True)


@router.post("/services/{name}/instances/{id_}/restore", response_model=ServiceView)
async def restore_instance(name: str, id_: str, gateway: CurrentGateway, admin: CurrentAdmin) -> ServiceView:
    """Undo a drain."""
    return await _set_draining(gateway, admin, name, id_, False)


@router.post("/services/{name}/health-check", response_model=ServiceView,
             responses=error_responses(e409="The service has no health_check"))
async def check_service(name: str, gateway: CurrentGateway) -> ServiceView:
    """Check every instance of the service now (concurrently, each within its timeout), then report."""
    service = _service(gateway, name)
    if service.config.health_check is None or not service.config.health_check.enabled:
        raise GatewayError(f"Service {name!r} has no health_check: in sluice.yaml.", status=409,
                           type="invalid_request_error", code="no_health_check")
    await gateway.health.check_service(service)
    return _view(gateway, service)


@router.get("/routes", response_model=RouteList)
async def list_routes(gateway: CurrentGateway) -> RouteList:
    """The service route table in match order, as `Rule.describe()` gives each rule."""
    registry = gateway.services
    return RouteList(data=[] if registry is None else [rule.describe() for rule in registry.rules.rules])


async def _set_draining(gateway: Gateway, admin: Principal, name: str, id_: str, draining: bool) -> ServiceView:
    service = _service(gateway, name)
    endpoint = _instance(service, id_)
    store = _store(gateway)
    change = store.current(name, endpoint.target)
    await store.put(name, endpoint.target, Change(change.weight, change.removed, draining))
    await record(gateway, admin, "service.instance.drain" if draining else "service.instance.restore",
                 f"{name}/{endpoint.target}", {"draining": draining})
    return _view(gateway, service)


def _registry(gateway: Gateway) -> ServiceRegistry:
    if gateway.services is None:
        raise GatewayError("This gateway has no services (no routes: in sluice.yaml).", status=404,
                           type="invalid_request_error", code="service_not_found")
    return gateway.services


def _store(gateway: Gateway) -> ServiceStore:
    store = _registry(gateway).store
    if store is None:
        raise GatewayError("The service registry is not started.", status=503, type="server_error")
    return store


def _service(gateway: Gateway, name: str) -> Service:
    service = _registry(gateway).services.get(name)
    if service is None:
        raise GatewayError(f"No service {name!r}.", status=404, type="invalid_request_error",
                           code="service_not_found")
    return service


def _instance(service: Service, id_: str) -> Endpoint:
    endpoint = service.instance(id_)
    if endpoint is None:
        raise GatewayError(f"Service {service.name!r} has no instance {id_!r}.", status=404,
                           type="invalid_request_error", code="instance_not_found")
    return endpoint


def _view(gateway: Gateway, service: Service) -> ServiceView:
    probes = covered(gateway.health.service_probes(service))
    instances = []
    for endpoint in service.pool.endpoints:
        health = _deployment(endpoint, probes.get(endpoint))
        instances.append(InstanceView(**health.model_dump(), instance_id=instance_id(endpoint.target),
                                      url=endpoint.target, weight=endpoint.weight, draining=endpoint.draining))
    check = service.config.health_check
    return ServiceView(
        name=service.name, strategy=service.config.strategy,
        serving=any(view.usable and not view.draining for view in instances),
        health_check=None if check is None or not check.enabled else f"{check.method} {check.path}",
        instances=instances)
