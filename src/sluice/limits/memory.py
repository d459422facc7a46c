"""The in-process limiter: GCRA times and concurrency counts in dicts; limits are per process."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic

from sluice.limits import gcra
from sluice.limits.backend import Charge, State, Verdict

SWEEP_EVERY = 10_000
"""After this many new entries, drop the ones whose buckets are whole again (many client addresses)."""


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
        """Check every charge at `now`, then commit them all if every one fits."""
        states: list[State] = []
        steps: list[gcra.Step | None] = []
        verdict = Verdict(True, states)
        for charge in charges:
            policy = charge.policy
            if policy.concurrent:
                used = self._in_use.get(policy.key, 0)
                fits = used < policy.quota
                states.append(State(policy, policy.quota - used - 1 if fits else 0, 0.0))
                steps.append(None)
                if not fits:
                    _refuse(verdict, charge, 1.0)
                continue
            outcome = gcra.step(self._tats.get(policy.key), now, policy.quota, charge.cost)
            states.append(State(policy, outcome.remaining, outcome.reset))
            steps.append(outcome)
            if not outcome.allowed:
                _refuse(verdict, charge, outcome.retry_after)
        if verdict.allowed:
            self._commit(charges, steps, verdict)
        return verdict

    def _commit(self, charges: Sequence[Charge], steps: list[gcra.Step | None], verdict: Verdict) -> None:
        slots = []
        for charge, outcome in zip(charges, steps, strict=True):
            key = charge.policy.key
            if outcome is None:
                self._in_use[key] = self._in_use.get(key, 0) + 1
                slots.append(key)
            else:
                self._remember(key, outcome.tat)
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


def _refuse(verdict: Verdict, charge: Charge, retry_after: float) -> None:
    """Mark the verdict refused, naming the policy that asks for the longest wait."""
    if verdict.allowed or retry_after > verdict.retry_after:
        verdict.violated, verdict.retry_after = charge.policy, retry_after
    verdict.allowed = False
