"""Builds provider adapters from their config entries."""

from __future__ import annotations

from sluice.config import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    MockProviderConfig,
    OpenAIProviderConfig,
    SluiceConfig,
)
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.azure import AzureProvider
from sluice.providers.base import Provider
from sluice.providers.mock import MockProvider
from sluice.providers.openai import OpenAIProvider


def build_provider(
    name: str,
    config: OpenAIProviderConfig | AzureProviderConfig | AnthropicProviderConfig | MockProviderConfig,
) -> Provider:
    """The adapter for one `providers:` entry."""
    if isinstance(config, AzureProviderConfig):
        return AzureProvider(name, config)
    if isinstance(config, OpenAIProviderConfig):
        return OpenAIProvider(name, config)
    if isinstance(config, AnthropicProviderConfig):
        return AnthropicProvider(name, config)
    return MockProvider(name, config)


def build_providers(config: SluiceConfig) -> dict[str, Provider]:
    return {name: build_provider(name, entry) for name, entry in config.providers.items()}
