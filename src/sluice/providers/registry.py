"""Builds provider adapters from their config entries."""

from __future__ import annotations

from sluice.config import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    MockProviderConfig,
    OpenAIProviderConfig,
    SluiceConfig,
)
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.azure import AzureProvider
from sluice.providers.base import Provider
from sluice.providers.gemini import GeminiProvider
from sluice.providers.mock import MockProvider
from sluice.providers.openai import OpenAIProvider


def build_provider(
    name: str,
    config: OpenAIProviderConfig | AzureProviderConfig | AnthropicProviderConfig | GeminiProviderConfig
    | BedrockProviderConfig | MockProviderConfig,
) -> Provider:
    """The adapter for one `providers:` entry; the mistral, groq and deepseek presets are OpenAIProviderConfig
    subclasses, so the OpenAI adapter serves them."""
    if isinstance(config, AzureProviderConfig):
        return AzureProvider(name, config)
    if isinstance(config, OpenAIProviderConfig):
        return OpenAIProvider(name, config)
    if isinstance(config, AnthropicProviderConfig):
        return AnthropicProvider(name, config)
    if isinstance(config, GeminiProviderConfig):
        return GeminiProvider(name, config)
    if isinstance(config, BedrockProviderConfig):
        from sluice.providers.bedrock import BedrockProvider  # botocore only in a worker that has a bedrock provider

        return BedrockProvider(name, config)
    return MockProvider(name, config)


def build_providers(config: SluiceConfig) -> dict[str, Provider]:
    return {name: build_provider(name, entry) for name, entry in config.providers.items()}
