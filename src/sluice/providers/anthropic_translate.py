"""The pure Anthropic ⇄ OpenAI translation layer: requests, replies, stream events and errors."""

from __future__ import annotations

from sluice.providers.anthropic_request import TranslationError, to_anthropic_request
from sluice.providers.anthropic_response import (
    ERROR_TYPES,
    FINISH_REASONS,
    from_anthropic_response,
    openai_error_from_anthropic,
)
from sluice.providers.anthropic_stream import AnthropicStreamError, AnthropicStreamTranslator

__all__ = [
    "ERROR_TYPES",
    "FINISH_REASONS",
    "AnthropicStreamError",
    "AnthropicStreamTranslator",
    "TranslationError",
    "from_anthropic_response",
    "openai_error_from_anthropic",
    "to_anthropic_request",
]
