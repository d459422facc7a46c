"""The in-process limiter: GCRA times and concurrency counts in dicts; limits are per process."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic

from sluice.limits import gcra
from sluice.limits.backend import WINDOW_SECONDS, Charge, Policy, State, Verdict

SWEEP_EVERY = 10_000
"""After this many new entries, drop the ones whose buckets are whole again (many client addresses)."""
_EPSILON = 1e-9


class MemoryLimiter:
    """Limits of this process only: with several workers or instances, each enforces its own."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._in_use: dict[str, int] = {}
        self._added = 0

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def acquire(self, charges: Sequence[Charge]) -> Verdict:
        return self.decide(charges, monotonic())

    def decide(self, charges: Sequence[Charge], now: float) -> Verdict:
        """Check every charge at `now`, then commit them all if every one fits.

        `gcra.step`'s arithmetic, inlined: this runs for every limited request, and the calls and objects of the
        readable version cost three times as much."""
        tats, in_use = self._tats, self._in_use
        states: list[State] = []
        verdict = Verdict(True, states)
        news: list[float] = []
        for policy, cost in charges:
            if policy.concurrent:
                used = in_use.get(policy.key, 0)
                news.append(-1.0)
                if used < policy.quota:
                    states.append(State(policy, policy.quota - used - 1, 0.0))
                else:
                    states.append(State(policy, 0, 0.0))
                    _refuse(verdict, policy, 1.0)
                continue
            interval = policy.interval
            tat = tats.get(policy.key)
            start = now if tat is None or tat < now else tat
            new = start + (cost if cost < policy.quota else policy.quota) * interval
            if new - now > WINDOW_SECONDS + _EPSILON:
                states.append(State(policy, 0, start - now))
                news.append(start)
                _refuse(verdict, policy, new - now - WINDOW_SECONDS)
            else:
                states.append(State(policy, int((WINDOW_SECONDS - (new - now)) / interval + _EPSILON), new - now))
                news.append(new)
        if verdict.allowed:
            self._commit(charges, news, verdict)
        return verdict

    def _commit(self, charges: Sequence[Charge], news: list[float], verdict: Verdict) -> None:
        slots = []
        for charge, new in zip(charges, news, strict=True):
            key = charge.policy.key
            if new < 0:
                self._in_use[key] = self._in_use.get(key, 0) + 1
                slots.append(key)
            else:
                self._remember(key, new)
        if slots:
            verdict.ticket, verdict.slots = "memory", tuple(slots)

    def release(self, verdict: Verdict) -> None:
        for key in verdict.slots:
            left = self._in_use.get(key, 0) - 1
            if left > 0:
                self._in_use[key] = left
            else:
                self._in_use.pop(key, None)
        verdict.slots = ()

    def adjust(self, corrections: Sequence[Charge]) -> None:
        now = monotonic()
        for charge in corrections:
            policy = charge.policy
            self._remember(policy.key, gcra.adjusted(self._tats.get(policy.key), now, policy.quota, charge.cost))

    def _remember(self, key: str, tat: float) -> None:
        if key not in self._tats:
            self._added += 1
            if self._added >= SWEEP_EVERY:
                self._sweep(monotonic())
        self._tats[key] = tat

    def _sweep(self, now: float) -> None:
        self._added = 0
        for key in [key for key, tat in self._tats.items() if tat <= now]:
            del self._tats[key]


def _refuse(verdict: Verdict, policy: Policy, retry_after: float) -> None:
    """Mark the verdict refused, naming the policy that asks for the longest wait."""
    if verdict.allowed or retry_after > verdict.retry_after:
        verdict.violated, verdict.retry_after = policy, retry_after
    verdict.allowed = False
