"""The model table: public names and aliases resolved to a provider and its own model name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sluice.config import SluiceConfig
from sluice.errors import NotFound
from sluice.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where one public model name is served."""

    name: str
    provider: Provider
    upstream_model: str


class RouteTable:
    """Resolves a request's `model` in one dictionary lookup, built once at start-up."""

    def __init__(self, config: SluiceConfig, providers: Mapping[str, Provider]) -> None:
        self._by_name: dict[str, Deployment] = {}
        self.public: list[Deployment] = []
        for model in config.models:
            deployment = Deployment(model.name, providers[model.provider], model.model)
            self.public.append(deployment)
            for name in (model.name, *model.aliases):
                self._by_name[name] = deployment

    def resolve(self, model: str) -> Deployment:
        deployment = self._by_name.get(model)
        if deployment is None:
            raise NotFound(f"The model '{model}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return deployment
