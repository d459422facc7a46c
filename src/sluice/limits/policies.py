"""The policies a request is charged against: its key's, its model's and its client address's limits."""

from __future__ import annotations

from collections.abc import Iterable

from sluice.config import ModelConfig
from sluice.limits.backend import Policy
from sluice.limits.options import RateLimit

_CACHE_SIZE = 10_000


def policies_of(limits: RateLimit, name: str, key: str) -> tuple[Policy, ...]:
    """The policies of one subject: `name` is its header name (`key`, `model`, `ip`), `key` its state's key."""
    found = []
    if limits.requests_per_minute is not None:
        found.append(Policy(name, f"{key}:r", limits.requests_per_minute))
    if limits.tokens_per_minute is not None:
        found.append(Policy(f"{name}-tokens", f"{key}:t", limits.tokens_per_minute, "tokens"))
    if limits.max_concurrent is not None:
        found.append(Policy(f"{name}-concurrency", f"{key}:c", limits.max_concurrent, "concurrent-requests"))
    return tuple(found)


def model_policies(models: Iterable[ModelConfig]) -> dict[str, tuple[Policy, ...]]:
    """Each limited model's policies by public name and alias (one shared state per model)."""
    found = {}
    for model in models:
        if model.limits is not None and not model.limits.unlimited:
            policies = policies_of(model.limits, "model", f"rl:m:{model.name}")
            for name in (model.name, *model.aliases):
                found[name] = policies
    return found


class KeyPolicies:
    """A key's policies, built once per key and limits (a key's limits may change: a new `RateLimit` rebuilds them).

    Found by key id, then checked against the limits object they were built from: by identity first (a cached
    principal carries the same object on every request; hashing a pydantic model costs more than the rest of
    admission), by value when another object arrives."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[RateLimit, tuple[Policy, ...]]] = {}

    def __call__(self, key_id: str, limits: RateLimit) -> tuple[Policy, ...]:
        found = self._cache.get(key_id)
        if found is not None and (found[0] is limits or found[0] == limits):
            return found[1]
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        policies = policies_of(limits, "key", f"rl:k:{key_id}")
        self._cache[key_id] = (limits, policies)
        return policies
