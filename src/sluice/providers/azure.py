"""Azure OpenAI (classic): deployment URLs, the `api-version` query and the `api-key` header."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from sluice.config import AzureProviderConfig
from sluice.providers.base import OPERATION_PATHS, UpstreamRequest
from sluice.providers.openai import OpenAIProvider
from sluice.providers.upstream import UpstreamClient


class AzureProvider(OpenAIProvider):
    """Azure speaks OpenAI's format; only the URL and the credential header differ."""

    def __init__(self, name: str, config: AzureProviderConfig) -> None:
        self.name = name
        headers = dict(config.headers)
        if config.api_key is not None:
            headers["api-key"] = config.api_key.get_secret_value()
        self.client = UpstreamClient(name, config.base_url, headers, config.timeout, config.max_connections)
        self._params = {"api-version": config.api_version}

    def _target(self, request: UpstreamRequest) -> tuple[str, Mapping[str, str] | None]:
        deployment = quote(str(request.body.get("model", "")), safe="")
        return f"/openai/deployments/{deployment}{OPERATION_PATHS[request.operation]}", self._params
