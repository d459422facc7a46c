"""The breaker's state machine on a hand-driven clock, read back through its Prometheus gauge."""

from __future__ import annotations

import pytest

from sluice.routing.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from sluice.routing.options import BreakerOptions
from sluice.telemetry.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(probes: int = 1) -> tuple[CircuitBreaker, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    options = BreakerOptions(failure_threshold=2, open_seconds=10, half_open_probes=probes)
    return CircuitBreaker("up", options, metrics, clock), clock, metrics


def gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("sluice_circuit_breaker_state", {"provider": "up", "deployment": ""})


def test_opens_at_the_threshold_and_refuses_until_open_seconds_passed() -> None:
    cb, clock, metrics = breaker()
    assert gauge(metrics) == CLOSED
    cb.admit(), cb.failed(), cb.admit(), cb.failed()
    assert cb.state == OPEN and gauge(metrics) == OPEN
    clock.now += 9.5
    with pytest.raises(CircuitOpen) as refused:
        cb.admit()
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    clock.now += 0.5
    cb.admit()  # the probe
    assert cb.state == HALF_OPEN and gauge(metrics) == HALF_OPEN
    with pytest.raises(CircuitOpen, match="probing"):
        cb.admit()  # only one probe at a time
    cb.succeeded()
    assert cb.state == CLOSED and gauge(metrics) == CLOSED
    assert metrics.registry.get_sample_value("sluice_circuit_breaker_transitions_total",
                                             {"provider": "up", "deployment": "", "to": "open"}) == 1


def test_a_probe_without_a_verdict_frees_its_slot_and_a_failed_probe_reopens() -> None:
    cb, clock, _ = breaker(probes=2)
    cb.failed(), cb.failed()
    clock.now += 10
    cb.admit(), cb.admit()
    with pytest.raises(CircuitOpen):
        cb.admit()
    cb.released()  # e.g. the client left
    cb.admit()
    cb.failed()
    assert cb.state == OPEN and cb.retry_at == clock.now + 10


def test_late_outcomes_of_calls_admitted_before_opening_change_nothing() -> None:
    cb, _, _ = breaker()
    cb.failed(), cb.failed()
    retry_at = cb.retry_at
    cb.succeeded(), cb.failed(), cb.released()
    assert cb.state == OPEN and cb.retry_at == retry_at
