"""The model table: public names and aliases resolved to a model's route (its pool of deployments, fallbacks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sluice.config import ModelConfig, SluiceConfig
from sluice.errors import NotFound
from sluice.providers.base import Provider
from sluice.routing.balance import balancer
from sluice.routing.endpoint import Endpoint
from sluice.routing.guard import deployment_guard
from sluice.routing.pool import Pool
from sluice.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Where one public model is served: its pool, then its fallback models in order."""

    name: str
    pool: Pool
    fallbacks: tuple[str, ...] = ()
    context_window_fallback: str | None = None

    @property
    def provider(self) -> str:
        """The first deployment's provider (what `/v1/models` calls its owner)."""
        return self.pool.endpoints[0].owner


class RouteTable:
    """Resolves a request's `model` in one dictionary lookup, built once at start-up."""

    def __init__(self, config: SluiceConfig, providers: Mapping[str, Provider], metrics: Metrics) -> None:
        self._by_name: dict[str, ModelRoute] = {}
        self.public: list[ModelRoute] = []
        for model in config.models:
            route = _route(config, model, providers, metrics)
            self.public.append(route)
            for name in (model.name, *model.aliases):
                self._by_name[name] = route

    def resolve(self, model: str) -> ModelRoute:
        route = self._by_name.get(model)
        if route is None:
            raise NotFound(f"The model '{model}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return route

    def endpoints(self) -> list[tuple[str, Endpoint]]:
        """Every (model, endpoint) pair, models in config order."""
        return [(route.name, endpoint) for route in self.public for endpoint in route.pool.endpoints]


def _route(config: SluiceConfig, model: ModelConfig, providers: Mapping[str, Provider], metrics: Metrics
           ) -> ModelRoute:
    fallbacks = tuple(model.fallbacks if model.fallbacks is not None else
                      [name for name in config.default_fallbacks if name != model.name])
    lone = len(model.deployments) == 1
    endpoints = []
    for deployment in model.deployments:
        provider = providers[deployment.provider]
        guard = deployment_guard(config, provider, deployment.model, metrics,
                                 # a lone deployment with somewhere else to go cools down at its first failure
                                 cool_down_at_once=lone and bool(fallbacks or model.context_window_fallback))
        endpoints.append(Endpoint(provider.name, deployment.model, deployment.weight, guard, deployment.limits))
    return ModelRoute(model.name, Pool(endpoints, balancer(model.strategy)), fallbacks,
                      model.context_window_fallback)
