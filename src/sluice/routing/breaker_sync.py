"""Breaker state shared through Redis: a deployment one instance found failing is skipped by every instance.

When a breaker opens on its own failures, the instance writes `{prefix}breaker:{deployment}` with a time to
live of the breaker's open period; every `POLL_SECONDS` each instance reads those keys for its deployments and
opens its own breaker for what is left of the period. A dead deployment therefore costs the whole fleet its
failure threshold once, not once per instance, and each instance still probes on its own when the period ends.
Redis failing only stops the sharing (logged once until it recovers): breakers go on working per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from sluice.redis_driver import driver_info
from sluice.routing.breaker import CircuitBreaker
from sluice.tasks import stop

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("sluice.routing")

POLL_SECONDS = 0.5


class BreakerSync:
    """Publishes breakers that open here and opens those that opened elsewhere; see the module docstring."""

    def __init__(self, url: str, prefix: str, timeout: float, breakers: Sequence[CircuitBreaker],
                 poll_seconds: float = POLL_SECONDS) -> None:
        from redis.asyncio import Redis  # only with Redis configured (redis-py is ~22 MB resident)

        self._client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                             driver_info=driver_info())
        self._breakers = {breaker.deployment: breaker for breaker in breakers if breaker.deployment}
        self._keys = {name: f"{prefix}breaker:{name}" for name in self._breakers}
        self._opened: list[CircuitBreaker] = []
        self._poll = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        for breaker in self._breakers.values():
            breaker.on_open = self._opened.append

    async def start(self) -> None:
        if self._breakers:
            self._task = asyncio.create_task(self._run(), name="sluice-breaker-sync")

    async def aclose(self) -> None:
        await stop(self._task)
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
                if self._failing:
                    logger.info("breaker state is shared through Redis again")
                self._failing = False
            except (RedisError, OSError, TimeoutError) as exc:  # keep the local breakers, say it once
                if not self._failing:
                    logger.warning("breaker state cannot be shared through Redis (%s); each process keeps its "
                                   "own until it can", type(exc).__name__)
                self._failing = True
            await asyncio.sleep(self._poll)

    async def sync(self) -> None:
        """Write the breakers opened here since the last round, then open those another instance opened."""
        async with self._client.pipeline(transaction=False) as pipe:
            opened = self._opened[:]  # the breakers append to this very list: empty it in place
            self._opened.clear()
            for breaker in opened:
                pipe.set(self._keys[breaker.deployment], "1", px=max(1, int(breaker.options.open_seconds * 1000)))
            names = list(self._keys)
            for name in names:
                pipe.pttl(self._keys[name])
            replies = await pipe.execute()
        for name, left in zip(names, replies[len(opened):], strict=True):
            if isinstance(left, int) and left > 0:
                self._breakers[name].open_for(left / 1000)
