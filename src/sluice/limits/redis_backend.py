"""The Redis limiter: every instance sharing one Redis (and key prefix) enforces the same limits.

A request whose rate policies this instance holds a local allowance for costs no round trip
(`redis_allowance.py`); any other costs one (`EVALSHA` of `redis_scripts.ACQUIRE`, which also tops the
allowances up; redis-py reloads the script on `NOSCRIPT`). Refills, releases and token corrections are sent
from background tasks, so requests never wait on them; corrections are gathered for `FLUSH_SECONDS` into one
call. Concurrency slots are leased: this process extends the leases of the slots it holds every `lease / 3`
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

from sluice.limits.backend import WINDOW_SECONDS, BackendFailure, Charge, Policy, State, Verdict
from sluice.limits.redis_allowance import IDLE_SECONDS, Allowance, block_of
from sluice.limits.redis_scripts import ACQUIRE, ADJUST, REFRESH
from sluice.redis_driver import driver_info

LEASE_SECONDS = 30.0
FLUSH_SECONDS = 0.05
"""Token corrections wait this long to go to Redis together (one call for every key corrected meanwhile)."""
LOCAL_SHARE = 0.01
"""The default share of a rate policy's quota an instance takes at a time (`limits.redis_local_share`)."""
COOL_DOWN_SECONDS = 1.0
"""After a failure, requests do not try Redis again for this long (each would wait up to the timeout)."""
_FAILURES = (RedisError, OSError, TimeoutError)
_new_tuple = tuple.__new__
Report = Callable[[str, BaseException], None]


class RedisLimiter:
    """Limits kept in Redis under `prefix`; each call gives up after `timeout` seconds."""

    def __init__(self, url: str, prefix: str, timeout: float, report: Report, lease: float = LEASE_SECONDS,
                 share: float = LOCAL_SHARE) -> None:
        self._client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                             retry=Retry(NoBackoff(), 0), health_check_interval=0,
                                             driver_info=driver_info())
        self._acquire = self._client.register_script(ACQUIRE)
        self._adjust = self._client.register_script(ADJUST)
        self._refresh = self._client.register_script(REFRESH)
        self._prefix, self._timeout, self._report = prefix, timeout, report
        self._lease = lease
        self._held: dict[str, tuple[str, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self._share = share
        self._allowances: dict[str, Allowance] = {}
        self._blocks: dict[Policy, int] = {}
        self._pending: dict[str, tuple[Policy, int]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and load the scripts now (so the first requests need not); Redis being down is not fatal."""
        self._refresher = asyncio.create_task(self._refresh_forever())
        self._sweeper = asyncio.create_task(self._sweep_forever())
        try:
            async with asyncio.timeout(max(1.0, self._timeout)):
                for script in (self._acquire, self._adjust, self._refresh):
                    await self._client.script_load(script.script)
        except _FAILURES as exc:
            self._report("acquire", exc)

    async def aclose(self) -> None:
        """Give back every unspent allowance and send the waiting corrections, then close."""
        for task in (self._refresher, self._sweeper):
            if task is not None:
                task.cancel()
        if self._flush is not None:
            self._flush.cancel()
        for allowance in self._allowances.values():
            self._owe(allowance.policy, -allowance.units)
        self._allowances.clear()
        for _ in range(2):  # the second time for what refills still running gave back when they ended
            self._send_pending()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self._timeout * 2)
        await self._client.aclose()

    async def acquire(self, charges: Sequence[Charge]) -> Verdict:
        now = monotonic()
        if now < self._down_until:
            raise BackendFailure("Redis failed less than a second ago")
        local = self.spend_now(charges)
        if local is not None:
            return Verdict(True, local)
        concurrent = any(charge.policy.concurrent for charge in charges)
        ticket = os.urandom(8).hex() if concurrent else ""
        args: list[Any] = [ticket, int(self._lease * 1000), WINDOW_SECONDS * 1000]
        allowances: list[Allowance | None] = []
        topping: list[Allowance] = []
        for policy, cost in charges:
            allowance = self._allowance(policy)
            allowances.append(allowance)
            if policy.concurrent:
                args += ("c", policy.quota, 1, 1)
            elif allowance is None:
                args += ("r", policy.quota, cost, cost)
            else:
                cost = min(cost, policy.quota)
                need = max(0, cost - allowance.units)
                # No top-up when it holds enough, or when another request's call tops it up already: the requests
                # that find an allowance empty at once (the first ones after an idle spell) would each take a block.
                low = allowance.units - cost < allowance.block / 2 and not allowance.acquiring
                if low:
                    allowance.acquiring = True
                    topping.append(allowance)
                args += ("r", policy.quota, need, need + allowance.want(cost) if low else need)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._acquire(keys=[self._prefix + charge.policy.key for charge in charges], args=args)
        except _FAILURES as exc:
            self._down_until = monotonic() + COOL_DOWN_SECONDS
            raise BackendFailure(f"{type(exc).__name__}: {exc}") from exc
        finally:
            for allowance in topping:
                allowance.acquiring = False
        return self._verdict(charges, allowances, reply, ticket, monotonic())

    def acquire_now(self, charges: Sequence[Charge]) -> Verdict | None:
        """The verdict when every charge fits in this instance's allowances, else None (then `acquire`)."""
        states = self.spend_now(charges)
        return None if states is None else Verdict(True, states)


    def _allowance(self, policy: Policy) -> Allowance | None:
        """The allowance kept for `policy`, made empty on first use; None for a policy charged exactly."""
        found = self._allowances.get(policy.key)
        if found is not None:
            return found
        block = self._blocks.get(policy)
        if block is None:
            if len(self._blocks) >= 10_000:
                self._blocks.clear()
            block = self._blocks[policy] = block_of(policy, self._share)
        if not block:
            return None
        found = self._allowances[policy.key] = Allowance(policy, block)
        return found

    def spend_now(self, charges: Sequence[Charge]) -> list[State] | None:
        """The states when every charge fits in this instance's allowances (spent), else None (nothing spent; then
        `acquire`).

        Written for speed (every request of a limited key, and of each client address, comes here): indexing rather
        than `zip`, and each `State` made by `tuple.__new__` (a NamedTuple's own `__new__` is a Python call)."""
        now = monotonic()
        if now < self._down_until:
            return None
        allowances = self._allowances
        found = []
        for policy, cost in charges:
            allowance = allowances.get(policy.key)
            if allowance is None:
                return None
            units = allowance.units
            if units < cost or not units:
                return None
            found.append(allowance)
        states: list[State] = []
        index = 0
        for allowance in found:
            policy, cost = charges[index]
            index += 1
            quota = policy.quota
            units = allowance.units = allowance.units - (cost if cost < quota else quota)
            allowance.used_at = now
            if units * 2 < allowance.block and not allowance.refilling:
                self._refill(allowance)
            reset = allowance.reset_at - now
            states.append(_new_tuple(State, (policy, allowance.remaining + units, reset if reset > 0.0 else 0.0)))
        return states

    def _refill(self, allowance: Allowance) -> None:
        allowance.refilling = True
        self._spawn("acquire", self._top_up(allowance))

    async def _top_up(self, allowance: Allowance) -> None:
        """Take another block for `allowance` (as much of it as Redis has left)."""
        policy = allowance.policy
        try:
            reply = await self._acquire(keys=[self._prefix + policy.key],
                                        args=["", 0, WINDOW_SECONDS * 1000, "r", policy.quota, 0, allowance.block])
        finally:
            allowance.refilling = False
        if int(reply[0]):
            self._take(allowance, int(reply[3]), int(reply[4]), int(reply[5]), monotonic())
            if self._allowances.get(policy.key) is not allowance:  # given back meanwhile: give these back too
                self._owe(policy, -allowance.units)
                allowance.units = 0

    @staticmethod
    def _take(allowance: Allowance, remaining: int, reset_ms: int, granted: int, now: float) -> None:
        allowance.units += granted
        allowance.remaining = remaining
        allowance.reset_at = now + reset_ms / 1000

    def _verdict(self, charges: Sequence[Charge], allowances: list[Allowance | None], reply: list[int],
                 ticket: str, now: float) -> Verdict:
        allowed, violated, retry_ms = int(reply[0]), int(reply[1]), int(reply[2])
        states = []
        for i, (policy, cost) in enumerate(charges):
            remaining, reset = int(reply[3 + 3 * i]), int(reply[4 + 3 * i]) / 1000
            allowance = allowances[i]
            if allowance is not None and allowed:
                self._take(allowance, remaining, int(reply[4 + 3 * i]), int(reply[5 + 3 * i]), now)
                allowance.units -= min(cost, policy.quota)
                allowance.used_at = now
                remaining += allowance.units
            states.append(State(policy, remaining, reset))
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
        """Corrections of a policy with an allowance come out of (or go back into) it first, the rest gathered for
        `FLUSH_SECONDS`; those of a policy charged exactly go at once (the caller's next request may need them)."""
        exact = False
        allowances = self._allowances
        for policy, delta in corrections:  # min and max written out: one correction per call, for most requests
            allowance = allowances.get(policy.key)
            if allowance is None:
                exact = True
            elif delta > 0:
                units = allowance.units
                taken = delta if delta < units else units
                allowance.units = units - taken
                delta -= taken
            else:
                room = 2 * allowance.block - allowance.units
                kept = -delta if -delta < room else (room if room > 0 else 0)
                allowance.units += kept
                delta += kept
            if delta:
                self._owe(policy, delta)
        if exact:
            self._send_pending()

    def _owe(self, policy: Policy, delta: int) -> None:
        """Add `delta` units to what is sent to Redis at the next flush."""
        if not delta:
            return
        waiting = self._pending.get(policy.key)
        self._pending[policy.key] = (policy, delta + (waiting[1] if waiting is not None else 0))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._send_pending)

    def _send_pending(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        args: list[Any] = [WINDOW_SECONDS * 1000]
        keys = []
        for key, (policy, delta) in pending.items():
            if delta:
                keys.append(self._prefix + key)
                args += (policy.quota, delta)
        if keys:
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

    async def _sweep_forever(self) -> None:
        """Give back the allowances no request has used for `IDLE_SECONDS`."""
        while True:
            await asyncio.sleep(IDLE_SECONDS / 2)
            idle_since = monotonic() - IDLE_SECONDS
            for key, allowance in list(self._allowances.items()):
                if allowance.used_at < idle_since and not allowance.refilling:
                    del self._allowances[key]
                    self._owe(allowance.policy, -allowance.units)

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
