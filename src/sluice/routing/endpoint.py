"""`Endpoint`: one upstream a pool can send to (a model's deployment or a service's instance), with its health,
load and breaker state."""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from sluice.limits.options import RateLimit
from sluice.routing.breaker import OPEN
from sluice.routing.guard import UpstreamGuard

if TYPE_CHECKING:
    from sluice.routing.health import CheckResult

EWMA_WEIGHT = 0.3
"""How much the newest latency counts in the moving average (the rest is the history)."""


class Endpoint:
    """Where to send (`owner`: the provider of a deployment or the service of an instance; `target`: the
    provider's name for the model, or the instance's base URL), how much (weight, own limits), and what routing
    knows of it: calls in flight, a moving average of its latency (time to the reply, or to a stream's first
    bytes), its breaker (in `guard`) and its last error."""

    __slots__ = ("id", "headers", "owner", "target", "weight", "guard", "limits", "in_flight", "latency",
                 "last_error", "healthy", "last_check", "draining", "_minute", "_requests", "_tokens")

    def __init__(self, owner: str, target: str, weight: float, guard: UpstreamGuard,
                 limits: RateLimit | None = None, *, kind: str = "deployment") -> None:
        self.id = f"{owner}/{target}"
        who = b"x-sluice-provider" if kind == "deployment" else b"x-sluice-service"
        self.headers = ((who, owner.encode()), (b"x-sluice-" + kind.encode(), self.id.encode()))
        """What every response this endpoint answered says of who answered."""
        self.owner = owner
        self.target = target
        self.weight = weight
        self.guard = guard
        self.limits = limits
        self.in_flight = 0
        self.latency: float | None = None
        """Seconds, moving average; None until a call finished."""
        self.last_error: str | None = None
        self.healthy = True
        """False while active health checks fail (routing/health.py)."""
        self.draining = False
        """True once an operator drained it: offered no new calls, its calls in flight finish."""
        self.last_check: CheckResult | None = None
        """The newest active health check of this deployment (None: none ran, or none is configured)."""
        self._minute = 0
        self._requests = 0
        self._tokens = 0

    @property
    def usable(self) -> bool:
        """Whether a call may be sent now: healthy, its breaker not refusing, under its own per-minute limits."""
        if not self.healthy or self.draining:
            return False
        breaker = self.guard.breaker
        if breaker is not None and breaker.state == OPEN and monotonic() < breaker.retry_at:
            return False
        return self.limits is None or self.headroom() > 0

    def headroom(self) -> float:
        """The share of this minute's own quota left (1.0 without limits): the lowest of requests and tokens."""
        limits = self.limits
        if limits is None:
            return 1.0
        self._roll()
        left = 1.0
        if limits.requests_per_minute is not None:
            left = min(left, 1 - self._requests / limits.requests_per_minute)
        if limits.tokens_per_minute is not None:
            left = min(left, 1 - self._tokens / limits.tokens_per_minute)
        return left

    def started(self, tokens: int = 0) -> None:
        self.in_flight += 1
        if self.limits is not None:
            self._roll()
            self._requests += 1
            self._tokens += tokens

    def finished(self, seconds: float | None, error: str | None = None) -> None:
        """A call ended: `seconds` until the upstream answered (None if it did not), or `error`."""
        self.in_flight -= 1
        if seconds is not None:
            self.latency = seconds if self.latency is None else \
                EWMA_WEIGHT * seconds + (1 - EWMA_WEIGHT) * self.latency
        if error is not None:
            self.last_error = error

    def _roll(self) -> None:
        minute = int(monotonic() // 60)
        if minute != self._minute:
            self._minute, self._requests, self._tokens = minute, 0, 0
