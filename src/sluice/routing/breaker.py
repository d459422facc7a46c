"""A circuit breaker per deployment (and one per provider for passthrough): closed → open after consecutive
failures → half-open probes → closed.

State lives in this process only (each worker keeps its own breakers); see docs/reliability.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from time import monotonic

from sluice.errors import ServiceUnavailable
from sluice.routing.options import BreakerOptions
from sluice.telemetry.metrics import Metrics

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
"""The states, as the `sluice_circuit_breaker_state` gauge shows them."""
STATE_NAMES = ("closed", "half_open", "open")


class CircuitOpen(ServiceUnavailable):
    """503 `upstream_circuit_open`: the provider's breaker refused the request without calling it."""

    code = "upstream_circuit_open"


class CircuitBreaker:
    """Counts consecutive failures of one provider and refuses calls while it is open.

    Callers `admit()` before a call (raises CircuitOpen) and report its outcome with exactly one of
    `succeeded()`, `failed()` or `released()` (no verdict: a 4xx, a client that left, a cancelled call).
    On the happy path, closed and no failures counted, each of these is one or two attribute checks.
    """

    __slots__ = ("provider", "deployment", "options", "state", "failures", "retry_at", "probes", "on_open",
                 "_metrics", "_clock")

    def __init__(self, provider: str, options: BreakerOptions, metrics: Metrics,
                 clock: Callable[[], float] = monotonic, deployment: str = "") -> None:
        self.provider = provider
        self.deployment = deployment
        """`provider/upstream model` for a model's deployment; empty for the provider's passthrough breaker."""
        self.options = options
        self.state = CLOSED
        self.failures = 0
        """Consecutive failures while closed."""
        self.retry_at = 0.0
        """While open: the `clock()` time at which the next request becomes a half-open probe."""
        self.probes = 0
        """While half-open: probes admitted and not yet finished."""
        self.on_open: Callable[[CircuitBreaker], None] | None = None
        """Told when this breaker opens on its own failures (the Redis sync shares it with other instances)."""
        self._metrics = metrics
        self._clock = clock
        metrics.breaker_state.labels(provider, deployment).set(CLOSED)

    def admit(self) -> None:
        """Let a call through, or raise CircuitOpen (503) while the breaker is open or its probes are taken."""
        if self.state == CLOSED:
            return
        now = self._clock()
        if self.state == OPEN:
            if now < self.retry_at:
                raise self._refusal(self.retry_at - now)
            self._move(HALF_OPEN)
        if self.probes >= self.options.half_open_probes:
            raise self._refusal(0.0)
        self.probes += 1

    def succeeded(self) -> None:
        """The upstream answered (any status below 500): close a half-open breaker, reset the failure count."""
        if self.state == CLOSED:
            self.failures = 0
        elif self.state == HALF_OPEN:
            self.probes = 0
            self.failures = 0
            self._move(CLOSED)

    def failed(self) -> None:
        """A connection error, timeout or 5xx: count it, and open the breaker at the threshold or on a probe."""
        if self.state == CLOSED:
            self.failures += 1
            if self.failures >= self.options.failure_threshold:
                self._open()
        elif self.state == HALF_OPEN:
            self._open()

    def released(self) -> None:
        """A call ended with no verdict on the upstream's health: free its probe slot, if it held one."""
        if self.state == HALF_OPEN and self.probes:
            self.probes -= 1

    def open_for(self, seconds: float) -> None:
        """Open now for `seconds` because another instance saw this upstream fail (no-op if already open)."""
        if self.state == OPEN or seconds <= 0:
            return
        self.failures = 0
        self.probes = 0
        self.retry_at = self._clock() + seconds
        self._move(OPEN)

    def _open(self) -> None:
        self.failures = 0
        self.probes = 0
        self.retry_at = self._clock() + self.options.open_seconds
        self._move(OPEN)
        if self.on_open is not None:
            self.on_open(self)

    def _move(self, state: int) -> None:
        self.state = state
        self._metrics.breaker_state.labels(self.provider, self.deployment).set(state)
        self._metrics.breaker_transitions.labels(self.provider, self.deployment, STATE_NAMES[state]).inc()

    def _refusal(self, wait: float) -> CircuitOpen:
        if wait > 0:
            when = f"Sluice will try it again in {wait:.1f} s."
        else:
            when = "Sluice is probing it now; retry shortly."
        what = f"Deployment {self.deployment!r}" if self.deployment else f"Upstream provider {self.provider!r}"
        error = CircuitOpen(f"{what} is failing and its circuit breaker is open, so this request was not sent. "
                            f"{when}")
        error.headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return error
