"""The in-process limiter: GCRA times and concurrency counts in dicts; limits are per process."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic

from sluice.limits import gcra
from sluice.limits.backend import WINDOW_SECONDS, Charge, Policy, State, Verdict

SWEEP_EVERY = 10_000
"""After this many new entries, drop the ones whose buckets are whole again (many client addresses)."""
_EPSILON = 1e-9
_new_tuple = tuple.__new__
"""Makes the `State`s without a NamedTuple's own `__new__` (a Python call: a third of the cost of each)."""


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

    def acquire_now(self, charges: Sequence[Charge]) -> Verdict:
        return self.decide(charges, monotonic())

    def spend_now(self, charges: Sequence[Charge]) -> list[State] | None:
        return self.spend(charges, monotonic())

    def spend(self, charges: Sequence[Charge], now: float) -> list[State] | None:
        """`decide`'s states at `now` when every charge is a rate charge that fits (all committed, as `decide`
        commits them); None, with nothing committed, when one does not fit or takes a concurrency slot."""
        tats = self._tats
        states: list[State] = []
        news: list[float] = []
        for policy, cost in charges:
            if policy.concurrent:
                return None
            interval = policy.interval
            tat = tats.get(policy.key)
            start = now if tat is None or tat < now else tat
            new = start + (cost if cost < policy.quota else policy.quota) * interval
            if new - now > WINDOW_SECONDS + _EPSILON:
                return None
            states.append(_new_tuple(State, (policy, int((WINDOW_SECONDS - (new - now)) / interval + _EPSILON),
                                              new - now)))
            news.append(new)
        added = 0
        index = 0
        for new in news:
            key = charges[index][0].key
            index += 1
            if key not in tats:
                added += 1
            tats[key] = new
        if added:
            self._count_new(added)
        return states

    def decide(self, charges: Sequence[Charge], now: float) -> Verdict:
        """Check every charge at `now`, then commit them all if every one fits.

        `gcra.step`'s arithmetic, inlined: this runs for every limited request, and the calls and objects of the
        readable version cost three times as much."""
        tats = self._tats
        states: list[State] = []
        verdict = Verdict(True, states)
        news: list[float] = []
        concurrent = False
        for policy, cost in charges:
            if policy.concurrent:
                concurrent = True
                used = self._in_use.get(policy.key, 0)
                news.append(-1.0)
                if used < policy.quota:
                    states.append(_new_tuple(State, (policy, policy.quota - used - 1, 0.0)))
                else:
                    states.append(_new_tuple(State, (policy, 0, 0.0)))
                    _refuse(verdict, policy, 1.0)
                continue
            interval = policy.interval
            tat = tats.get(policy.key)
            start = now if tat is None or tat < now else tat
            new = start + (cost if cost < policy.quota else policy.quota) * interval
            if new - now > WINDOW_SECONDS + _EPSILON:
                states.append(_new_tuple(State, (policy, 0, start - now)))
                news.append(start)
                _refuse(verdict, policy, new - now - WINDOW_SECONDS)
            else:
                states.append(_new_tuple(State, (policy, int((WINDOW_SECONDS - (new - now)) / interval + _EPSILON),
                                                  new - now)))
                news.append(new)
        if verdict.allowed:
            if concurrent:
                self._commit(charges, news, verdict)
            else:  # rate policies only (the common case): the new times stored here, without _commit's calls
                added = 0
                for (policy, _), new in zip(charges, news, strict=True):
                    key = policy.key
                    if key not in tats:
                        added += 1
                    tats[key] = new
                if added:
                    self._count_new(added)
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
        tats = self._tats
        for policy, delta in corrections:
            key = policy.key
            tat = tats.get(key)
            if tat is None:
                self._count_new(1)
            tats[key] = gcra.adjusted(tat, now, policy.quota, delta)

    def _remember(self, key: str, tat: float) -> None:
        if key not in self._tats:
            self._count_new(1)
        self._tats[key] = tat

    def _count_new(self, added: int) -> None:
        """Count new entries; past `SWEEP_EVERY` of them, drop the whole buckets."""
        self._added += added
        if self._added >= SWEEP_EVERY:
            self._sweep(monotonic())

    def _sweep(self, now: float) -> None:
        self._added = 0
        for key in [key for key, tat in self._tats.items() if tat <= now]:
            del self._tats[key]


def _refuse(verdict: Verdict, policy: Policy, retry_after: float) -> None:
    """Mark the verdict refused, naming the policy that asks for the longest wait."""
    if verdict.allowed or retry_after > verdict.retry_after:
        verdict.violated, verdict.retry_after = policy, retry_after
    verdict.allowed = False
