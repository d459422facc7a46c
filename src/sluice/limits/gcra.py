"""GCRA (the generic cell rate algorithm): one stored time per policy, a burst of one window's quota.

A policy allowing `quota` units per `window` seconds emits one unit every `window / quota` seconds. Its state is
the theoretical arrival time (TAT): when the bucket would be whole again if nothing more were charged. A charge
of `cost` moves the TAT `cost` intervals later and is allowed while the TAT stays within one window of now.
The Redis backend runs the same arithmetic in Lua (milliseconds), see `redis_scripts.py`.
"""

from __future__ import annotations

from typing import NamedTuple

from sluice.limits.backend import WINDOW_SECONDS

_EPSILON = 1e-9


class Step(NamedTuple):
    """The outcome of one charge: whether it fits, the TAT to store if it does, and what the headers show."""

    allowed: bool
    tat: float
    remaining: int
    reset: float
    retry_after: float


def step(tat: float | None, now: float, quota: int, cost: int, window: float = WINDOW_SECONDS) -> Step:
    """Charge `cost` units (at most `quota`) at time `now` against a bucket whose stored TAT is `tat`."""
    interval = window / quota
    start = now if tat is None or tat < now else tat
    new = start + min(cost, quota) * interval
    if new - now > window + _EPSILON:
        return Step(False, start, 0, start - now, new - now - window)
    return Step(True, new, int((window - (new - now)) / interval + _EPSILON), new - now, 0.0)


def adjusted(tat: float | None, now: float, quota: int, delta: int, window: float = WINDOW_SECONDS) -> float:
    """The TAT after adding `delta` units (negative: a refund) outside any admission decision."""
    start = now if tat is None or tat < now else tat
    return max(now, start + delta * window / quota)
