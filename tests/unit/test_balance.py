"""The load-balancing strategies and the failover reasons, on real endpoints (no upstream needed to pick)."""

from __future__ import annotations

import random

from sluice.config import MockProviderConfig
from sluice.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from sluice.limits.options import RateLimit
from sluice.providers.mock import MockProvider
from sluice.routing.balance import FastestOfTwo, LeastBusy, MostHeadroom, SmoothWeighted
from sluice.routing.endpoint import Endpoint
from sluice.routing.fallback import failover_reason
from sluice.routing.guard import UpstreamGuard
from sluice.routing.pool import Pool
from sluice.telemetry.metrics import Metrics


def endpoint(name: str, weight: float = 1.0, limits: RateLimit | None = None) -> Endpoint:
    provider = MockProvider(name, MockProviderConfig(type="mock"))
    return Endpoint(name, "m", weight, UpstreamGuard(provider, None, None, Metrics(None)), limits)


def test_smooth_weighted_spreads_picks_as_nginx_does() -> None:
    a, b, c = endpoint("a", 5), endpoint("b", 1), endpoint("c", 1)
    balancer = SmoothWeighted()
    picks = "".join(balancer.pick([a, b, c]).owner for _ in range(14))
    assert picks == "aabacaa" * 2


def test_least_busy_takes_the_fewest_in_flight() -> None:
    a, b = endpoint("a"), endpoint("b")
    a.started()
    assert {LeastBusy().pick([a, b]).owner for _ in range(5)} == {"b"}


def test_fastest_of_two_prefers_low_latency_and_tries_the_unmeasured() -> None:
    fast, slow, new = endpoint("fast"), endpoint("slow"), endpoint("new")
    fast.latency, slow.latency = 0.01, 0.5
    balancer = FastestOfTwo(random.Random(7))
    assert {balancer.pick([fast, slow]).owner for _ in range(20)} == {"fast"}
    assert balancer.pick([slow, new]).owner == "new"


def test_usage_keeps_each_deployment_under_its_own_limit() -> None:
    small = endpoint("small", limits=RateLimit(requests_per_minute=2))
    big = endpoint("big", limits=RateLimit(requests_per_minute=4))
    pool = Pool([small, big], MostHeadroom())
    picked = []
    for _ in range(6):
        chosen = pool.pick(())
        assert chosen is not None
        chosen.started()
        chosen.finished(0.01)
        picked.append(chosen.owner)
    assert sorted(picked) == ["big"] * 4 + ["small"] * 2
    assert pool.pick(()) is None  # both at their own limit this minute: nothing is sent to earn a 429


def test_a_pool_says_whether_another_endpoint_is_left_after_its_pick() -> None:
    a, b, c = endpoint("a"), endpoint("b"), endpoint("c")
    pool = Pool([a, b, c], FastestOfTwo(random.Random(7)))
    first, others = pool.choose(())
    assert first is not None and others
    assert {pool.choose(())[0] for _ in range(200)} == {a, b, c}  # never measured: each gets tried
    assert pool.choose([a, b]) == (c, False)  # the last one left: the failover lets it retry
    b.healthy = False
    assert pool.choose([a]) == (c, False) and pool.choose(()) in ((a, True), (c, True))
    assert pool.choose((), providers=frozenset({"c"})) == (c, False)
    assert pool.choose([c], providers=frozenset({"c"})) == (None, False)
    lone = Pool([a], FastestOfTwo())
    assert lone.choose(()) == (a, False) and lone.choose([a]) == (None, False)


def test_only_failures_another_upstream_might_not_repeat_move_a_call_on() -> None:
    assert failover_reason(UpstreamTimeout("slow")) == "timeout"
    assert failover_reason(UpstreamError("down", status=503)) == "http_503"
    assert failover_reason(UpstreamError("slow down", status=429)) == "rate_limited"
    assert failover_reason(UpstreamError("spent", status=429, code="insufficient_quota")) == "quota"
    assert failover_reason(UpstreamError("too long", status=400, code="context_length_exceeded")) == "context_window"
    assert failover_reason(UpstreamError("bad value", status=400, code="invalid_value")) is None
    assert failover_reason(InvalidRequest("bad json")) is None
