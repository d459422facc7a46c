"""Bounds on what the admin API stores for a key, checked before any database sees it: text without NUL (which
PostgreSQL refuses), short scope entries, bounded metadata, limits and budgets in range, an expiry that exists in
UTC. Each is a 400 naming the field, never the store's 500 or 503."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, field_validator

from sluice.errors import NotFound
from sluice.limits.options import Budget, RateLimit

MAX_ENTRY_CHARS = 256
"""A scope entry (a model, provider, project or service name)."""
MAX_ENTRIES = 1000
MAX_METADATA_BYTES = 16 * 1024
"""The key's metadata as JSON."""
MAX_METADATA_DEPTH = 32
MAX_LIMIT = 10**12
"""Requests or tokens per minute, or calls at once: more is no limit, and past it the limiter's arithmetic is not
tested."""
MAX_USD = 1e12
MAX_ID_CHARS = 128


def clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("may not contain a NUL character")
    return value


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"may nest at most {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        clean_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            clean_text(key)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


class BoundedKeyInput(BaseModel):
    """The checks of a key's settings as an admin sends them (create and update)."""

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value)

    @field_validator("models", "providers", "projects", "services", check_fields=False)
    @classmethod
    def _scope(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_ENTRIES:
            raise ValueError(f"may list at most {MAX_ENTRIES} names")
        for entry in value:
            if len(entry) > MAX_ENTRY_CHARS:
                raise ValueError(f"names are at most {MAX_ENTRY_CHARS} characters")
            clean_text(entry)
        return value

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        _check_json(value)
        try:
            encoded = orjson.dumps(value)
        except TypeError:  # an integer past 64 bits
            raise ValueError("holds a value that is not JSON (integers are at most 64 bits)") from None
        if len(encoded) > MAX_METADATA_BYTES:
            raise ValueError(f"may take at most {MAX_METADATA_BYTES} bytes as JSON")
        return value

    @field_validator("limits", check_fields=False)
    @classmethod
    def _limits(cls, value: RateLimit | None) -> RateLimit | None:
        if value is not None:
            for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent"):
                if (getattr(value, name) or 0) > MAX_LIMIT:
                    raise ValueError(f"{name} may be at most {MAX_LIMIT}")
        return value

    @field_validator("budget", check_fields=False)
    @classmethod
    def _budget(cls, value: Budget | None) -> Budget | None:
        if value is not None and not (math.isfinite(value.usd) and value.usd <= MAX_USD):
            raise ValueError(f"usd must be a finite amount of at most {MAX_USD:.0e}")
        return value

    @field_validator("expires_at", check_fields=False)
    @classmethod
    def _expires_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time is outside the years 1 to 9999 in UTC") from None


def known_id(key_id: str) -> str:
    """`key_id` when it could name a key; else the store's 404 (a NUL would be PostgreSQL's error instead)."""
    if "\x00" in key_id or len(key_id) > MAX_ID_CHARS:
        raise NotFound(f"No API key with id {key_id[:MAX_ID_CHARS]!r}.", param="id", code="key_not_found")
    return key_id
