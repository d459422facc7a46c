"""The pure Gemini ⇄ OpenAI translation layer: requests, replies, stream events, embeddings and errors."""

from __future__ import annotations

from sluice.providers.anthropic_request import TranslationError
from sluice.providers.gemini_request import gemini_schema, model_path, to_gemini_embeddings, to_gemini_request
from sluice.providers.gemini_response import (
    FINISH_REASONS,
    GeminiError,
    from_gemini_embeddings,
    from_gemini_response,
    gemini_error,
    new_call_id,
    openai_usage,
)
from sluice.providers.gemini_stream import GeminiStreamError, GeminiStreamTranslator

__all__ = [
    "FINISH_REASONS",
    "GeminiError",
    "GeminiStreamError",
    "GeminiStreamTranslator",
    "TranslationError",
    "from_gemini_embeddings",
    "from_gemini_response",
    "gemini_error",
    "gemini_schema",
    "model_path",
    "new_call_id",
    "openai_usage",
    "to_gemini_embeddings",
    "to_gemini_request",
]
