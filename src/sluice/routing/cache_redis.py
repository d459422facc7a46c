"""The response cache in Redis: entries every instance sharing one Redis (and key prefix) reads and writes.

An entry is one string, `<prefix>cache:<key>`: the time it was stored (8 bytes, a little-endian double of wall-clock
seconds, so instances agree on its age) then the answer, expiring with its TTL (`SET … PX`). A lookup is one `GET`;
a write is sent from a background task, so no request waits on it. A failed or slow call never fails a request: it
is counted (`sluice_cache_failures_total{operation}`), the lookup is a miss, and for `COOL_DOWN_SECONDS` after it
the cache does not try Redis at all (each try would wait up to the timeout).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable
from time import monotonic, time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sluice.redis_driver import driver_info
from sluice.routing.cache import Entry

if TYPE_CHECKING:
    from prometheus_client import Counter

logger = logging.getLogger("sluice.cache")
COOL_DOWN_SECONDS = 1.0
LOG_INTERVAL = 10.0
_FAILURES = (RedisError, OSError, TimeoutError)
_STAMP = struct.Struct("<d")


class RedisStore:
    """Entries under `prefix` + `cache:`; each call gives up after `timeout` seconds."""

    def __init__(self, url: str, prefix: str, timeout: float, failures: Counter) -> None:
        self._client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                             retry=Retry(NoBackoff(), 0), health_check_interval=0,
                                             driver_info=driver_info())
        self._prefix = prefix.encode() + b"cache:"
        self._timeout = timeout
        self._failures = {operation: failures.labels(operation) for operation in ("get", "set")}
        self._down_until = 0.0
        self._logged_at = -LOG_INTERVAL
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: bytes) -> Entry | None:
        if monotonic() < self._down_until:
            self._failures["get"].inc()
            return None
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._client.get(self._prefix + key)
        except _FAILURES as exc:
            self._failed("get", exc)
            return None
        if not isinstance(raw, bytes) or len(raw) < _STAMP.size:
            return None
        return Entry(max(0.0, time() - _STAMP.unpack_from(raw)[0]), raw[_STAMP.size:])

    def put(self, key: bytes, body: bytes, ttl: float) -> None:
        if monotonic() < self._down_until:
            self._failures["set"].inc()
            return
        value = _STAMP.pack(time()) + body
        self._spawn(self._client.set(self._prefix + key, value, px=max(1, int(ttl * 1000))))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Awaitable[Any]) -> None:
        try:
            async with asyncio.timeout(self._timeout * 5):  # a large answer may take longer than a lookup
                await work
        except _FAILURES as exc:
            self._failed("set", exc)

    def _failed(self, operation: str, error: BaseException) -> None:
        self._failures[operation].inc()
        now = monotonic()
        self._down_until = now + COOL_DOWN_SECONDS
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            logger.warning("response cache: Redis failed on %s (%s: %s); lookups are misses meanwhile", operation,
                           type(error).__name__, error)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._timeout * 5)
        await self._client.aclose()
