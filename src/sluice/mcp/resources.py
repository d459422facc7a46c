"""The services a key may reach as MCP resources: `sluice://services/{name}`, listed and read as JSON."""

from __future__ import annotations

from typing import Any

import orjson
from mcp import types
from mcp.shared.exceptions import McpError

from sluice.errors import PermissionDenied
from sluice.gateway import Gateway
from sluice.http.admin_services import get_service
from sluice.keys.principal import Principal
from sluice.services.rules import Rule

PREFIX = "sluice://services/"
MIME_TYPE = "application/json"
RESOURCE_NOT_FOUND = -32002
"""The JSON-RPC error code the MCP specification gives an unknown resource."""


def reachable(gateway: Gateway, principal: Principal) -> list[str]:
    """The services (`services:`) this key may reach, in config order (none when the gateway has no routes)."""
    registry = gateway.services
    if registry is None:
        return []
    return [name for name in registry.services if _may_reach(principal, name)]


def service_resources(gateway: Gateway, principal: Principal) -> list[types.Resource]:
    """One resource per reachable service, described by the path patterns of its routes."""
    resources = []
    for name in reachable(gateway, principal):
        paths = ", ".join(_pattern(rule) for rule in _routes_of(gateway, name)) or "no route"
        resources.append(types.Resource(uri=f"{PREFIX}{name}", name=name, mimeType=MIME_TYPE,
                                        description=f"Service {name!r} of the gateway; routes: {paths}."))
    return resources


HIDDEN_FROM_CALLERS = ("url", "id", "model", "last_error", "last_check")
"""An instance's fields that name its address (its URL, the `service/url` id, errors and checks quoting it), shown
to admin keys only."""


async def read_service(gateway: Gateway, principal: Principal, uri: str) -> str:
    """The JSON document of the service `uri` names: its routes and what `GET /admin/services/{name}` shows of it
    (instances with health, breaker, in flight; their URLs only to an admin key); McpError for a URI that names no
    service this key may reach."""
    name = uri[len(PREFIX):] if uri.startswith(PREFIX) else None
    registry = gateway.services
    if not name or registry is None or name not in registry.services:
        raise McpError(types.ErrorData(code=RESOURCE_NOT_FOUND, message=f"No resource {uri!r}: resources are "
                                       f"{PREFIX}{{name}} for the services this API key may reach."))
    try:
        principal.check_service(name)
    except PermissionDenied as refused:
        raise McpError(types.ErrorData(code=RESOURCE_NOT_FOUND, message=f"{refused.message} ({uri})")) from None
    document: dict[str, Any] = (await get_service(name, gateway)).model_dump(mode="json")
    if not principal.admin:  # where the instances live is the operator's to know, not every caller's
        for instance in document.get("instances") or []:
            for hidden in HIDDEN_FROM_CALLERS:
                if hidden in instance:
                    instance[hidden] = None
    document["routes"] = [_route(rule, name) for rule in _routes_of(gateway, name)]
    return orjson.dumps(document).decode()


def _may_reach(principal: Principal, name: str) -> bool:
    try:
        principal.check_service(name)
    except PermissionDenied:
        return False
    return True


def _routes_of(gateway: Gateway, name: str) -> list[Rule]:
    """The rules that send requests to service `name` (as its `service`, or one side of a `split`), in match order."""
    registry = gateway.services
    if registry is None:
        return []
    return [rule for rule in registry.rules.rules
            if rule.config.service == name or any(target.service == name for target in rule.config.split or ())]


def _pattern(rule: Rule) -> str:
    return rule.config.path or f"regex {rule.config.path_regex}"


def _route(rule: Rule, name: str) -> dict[str, Any]:
    """A route as the resource shows it: `methods` null is any method; `weight` is this service's share of a split."""
    config = rule.config
    route: dict[str, Any] = {"path": config.path, "path_regex": config.path_regex, "methods": config.methods,
                             "websocket": config.websocket, "auth": config.auth}
    for target in config.split or ():
        if target.service == name:
            route["weight"] = target.weight
    return route
