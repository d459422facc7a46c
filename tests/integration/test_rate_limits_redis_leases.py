"""Redis concurrency slots are leases: a dead instance's slots expire, a live instance keeps its own alive."""

from __future__ import annotations

import asyncio

import pytest

from sluice.limits.backend import Charge, Policy
from sluice.limits.redis_backend import RedisLimiter
from tests.limits_support import needs_redis, redis_backend

pytestmark = [pytest.mark.anyio, pytest.mark.redis, needs_redis]
SLOT = Charge(Policy("key-concurrency", "rl:k:lease:c", 1, "concurrent-requests"))


def ignore(operation: str, error: BaseException) -> None:
    raise AssertionError(f"{operation} failed: {error}")


def limiter(backend_settings: dict[str, str], prefix: str, lease: float) -> RedisLimiter:
    return RedisLimiter(backend_settings["redis_url"], prefix, 0.5, ignore, lease=lease)


async def test_the_slots_of_a_dead_instance_expire_with_their_lease() -> None:
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        dead = limiter(backend.settings, prefix, lease=0.3)
        assert (await dead.acquire([SLOT])).allowed
        await dead._client.aclose()  # dies without releasing (and without its refresher)
        other = limiter(backend.settings, prefix, lease=0.3)
        try:
            assert not (await other.acquire([SLOT])).allowed
            await asyncio.sleep(0.4)
            assert (await other.acquire([SLOT])).allowed
        finally:
            await other.aclose()


async def test_a_held_slot_outlives_its_lease_while_its_instance_lives() -> None:
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        holder, other = limiter(backend.settings, prefix, 0.3), limiter(backend.settings, prefix, 0.3)
        await holder.start()
        try:
            held = await holder.acquire([SLOT])
            await asyncio.sleep(0.7)
            assert not (await other.acquire([SLOT])).allowed
            holder.release(held)
            await asyncio.sleep(0.05)
            assert (await other.acquire([SLOT])).allowed
        finally:
            await holder.aclose()
            await other.aclose()
