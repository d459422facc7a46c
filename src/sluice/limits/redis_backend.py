"""The Redis limiter: every instance sharing one Redis (and key prefix) enforces the same limits.

A request costs one round trip (`EVALSHA` of `redis_scripts.ACQUIRE`; redis-py reloads the script on
`NOSCRIPT`). Releases and token corrections are sent from background tasks, so requests never wait on them.
Concurrency slots are leased: this process extends the leases of the slots it holds every `lease / 3`
seconds, so the slots of an instance that dies free themselves within one lease.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from time import monotonic
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sluice.limits.backend import WINDOW_SECONDS, BackendFailure, Charge, State, Verdict
from sluice.limits.redis_scripts import ACQUIRE, ADJUST, REFRESH

LEASE_SECONDS = 30.0
COOL_DOWN_SECONDS = 1.0
"""After a failure, requests do not try Redis again for this long (each would wait up to the timeout)."""
_FAILURES = (RedisError, OSError, TimeoutError)
Report = Callable[[str, BaseException], None]


class RedisLimiter:
    """Limits kept in Redis under `prefix`; each call gives up after `timeout` seconds."""

    def __init__(self, url: str, prefix: str, timeout: float, report: Report, lease: float = LEASE_SECONDS) -> None:
        self._client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                             retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._acquire = self._client.register_script(ACQUIRE)
        self._adjust = self._client.register_script(ADJUST)
        self._refresh = self._client.register_script(REFRESH)
        self._prefix, self._timeout, self._report = prefix, timeout, report
        self._lease = lease
        self._held: dict[str, tuple[str, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._down_until = 0.0

    async def start(self) -> None:
        """Connect and load the scripts now (so the first requests need not); Redis being down is not fatal."""
        self._refresher = asyncio.create_task(self._refresh_forever())
        try:
            async with asyncio.timeout(max(1.0, self._timeout)):
                for script in (self._acquire, self._adjust, self._refresh):
                    await self._client.script_load(script.script)
        except _FAILURES as exc:
            self._report("acquire", exc)

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._timeout * 2)
        await self._client.aclose()

    async def acquire(self, charges: Sequence[Charge]) -> Verdict:
        if monotonic() < self._down_until:
            raise BackendFailure("Redis failed less than a second ago")
        concurrent = any(charge.policy.concurrent for charge in charges)
        ticket = os.urandom(8).hex() if concurrent else ""
        args: list[Any] = [ticket, int(self._lease * 1000), WINDOW_SECONDS * 1000]
        for charge in charges:
            args += ("c" if charge.policy.concurrent else "r", charge.policy.quota, charge.cost)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._acquire(keys=[self._prefix + charge.policy.key for charge in charges], args=args)
        except _FAILURES as exc:
            self._down_until = monotonic() + COOL_DOWN_SECONDS
            raise BackendFailure(f"{type(exc).__name__}: {exc}") from exc
        return self._verdict(charges, reply, ticket)

    def _verdict(self, charges: Sequence[Charge], reply: list[int], ticket: str) -> Verdict:
        allowed, violated, retry_ms = int(reply[0]), int(reply[1]), int(reply[2])
        states = [State(charge.policy, int(reply[3 + 2 * i]), int(reply[4 + 2 * i]) / 1000)
                  for i, charge in enumerate(charges)]
        if not allowed:
            return Verdict(False, states, retry_ms / 1000, charges[violated - 1].policy)
        slots = tuple(self._prefix + c.policy.key for c in charges if c.policy.concurrent)
        if not slots:
            return Verdict(True, states)
        self._held[ticket] = slots
        return Verdict(True, states, ticket=ticket, slots=slots)

    def release(self, verdict: Verdict) -> None:
        ticket = verdict.ticket
        if ticket is None or self._held.pop(ticket, None) is None:
            return
        slots, verdict.slots = verdict.slots, ()
        self._spawn("release", self._zrem(slots, ticket))

    async def _zrem(self, slots: tuple[str, ...], ticket: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.zrem(slot, ticket)
            await pipe.execute()

    def adjust(self, corrections: Sequence[Charge]) -> None:
        args: list[Any] = [WINDOW_SECONDS * 1000]
        for charge in corrections:
            args += (charge.policy.quota, charge.cost)
        keys = [self._prefix + charge.policy.key for charge in corrections]
        self._spawn("adjust", self._adjust(keys=keys, args=args))

    def _spawn(self, operation: str, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(self._guarded(operation, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, operation: str, work: Coroutine[Any, Any, Any]) -> None:
        try:
            async with asyncio.timeout(self._timeout * 5):
                await work
        except _FAILURES as exc:
            self._report(operation, exc)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            held = [(slot, ticket) for ticket, slots in self._held.items() for slot in slots]
            if not held:
                continue
            try:
                async with asyncio.timeout(self._timeout * 5):
                    await self._refresh(keys=[slot for slot, _ in held],
                                        args=[int(self._lease * 1000), *(ticket for _, ticket in held)])
            except _FAILURES as exc:
                self._report("refresh", exc)
