"""Helpers for the rate-limit tests: a limiter backend per test (memory, or Redis under a key prefix of its own)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

REDIS_ENV = "SLUICE_TEST_REDIS_URL"
needs_redis = pytest.mark.skipif(not os.environ.get(REDIS_ENV),
                                 reason=f"{REDIS_ENV} is not set (e.g. redis://127.0.0.1:6379/0)")


@dataclass(frozen=True)
class Backend:
    """How a test's gateways keep their limits: `yaml` goes inside `limits:`, `settings` into run_gateway."""

    name: str
    yaml: str
    settings: dict[str, Any] = field(default_factory=dict)


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set")
    return url


@contextlib.contextmanager
def redis_backend() -> Iterator[Backend]:
    """Redis under a fresh key prefix; the prefix's keys are deleted afterwards."""
    url = redis_url()
    prefix = f"sluice-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield Backend("redis", f"backend: redis, redis_prefix: '{prefix}'", {"redis_url": url})
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


MEMORY = Backend("memory", "backend: memory")
BACKENDS = ["memory", pytest.param("redis", marks=[pytest.mark.redis, needs_redis])]


@contextlib.contextmanager
def backend_named(name: str) -> Iterator[Backend]:
    if name == "memory":
        yield MEMORY
        return
    with redis_backend() as backend:
        yield backend
