"""Redis clients tell the server redis-py's name and version (CLIENT SETINFO, Redis 7.2 on), resolved once per process,
not per connection."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest
import redis.utils

from sluice.limits.redis_backend import RedisLimiter
from tests.limits_support import needs_redis, redis_backend

pytestmark = [pytest.mark.redis, needs_redis]


def fail(operation: str, error: BaseException) -> None:
    raise AssertionError(f"{operation} failed: {error}")


@pytest.mark.anyio
async def test_new_connections_send_the_same_client_setinfo_without_reading_the_package_metadata(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_backend() as backend:
        instance = RedisLimiter(backend.settings["redis_url"], backend.yaml.split("'")[1], 0.5, fail)
        looked_up: list[str] = []
        with monkeypatch.context() as patched:
            patched.setattr(redis.utils, "get_lib_version", lambda: looked_up.append("lookup") or "0")
            await asyncio.gather(*(instance._client.ping() for _ in range(8)))  # 8 connections at once
        sent = instance._client.connection_pool.connection_kwargs["driver_info"]  # what CLIENT SETINFO sends
        await instance.aclose()
    assert looked_up == []
    assert (sent.formatted_name, sent.lib_version) == ("redis-py", metadata.version("redis"))
