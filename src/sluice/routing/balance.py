"""Load-balancing strategies: which of a pool's usable endpoints takes the next call."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Literal, Protocol

from sluice.routing.endpoint import Endpoint

AnyStrategy = Literal["round_robin", "weighted", "least_busy", "latency", "usage", "random", "consistent_hash"]


class Balancer(Protocol):
    """Picks one of `endpoints` (never empty, every one usable); `affinity` is what keeps a caller on one
    endpoint, for the strategies that use it."""

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint: ...


class RoundRobin:
    """Each in turn."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        self._next += 1
        return endpoints[self._next % len(endpoints)]


class SmoothWeighted:
    """Nginx's smooth weighted round-robin: deterministic, each endpoint's share of any window of sum(weights)
    picks equals its weight, spread out (weights 5, 1, 1 give a a b a c a a, not a a a a a b c)."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        current = self._current
        total = 0.0
        best: Endpoint | None = None
        for endpoint in endpoints:
            weight = current.get(endpoint.id, 0.0) + endpoint.weight
            current[endpoint.id] = weight
            total += endpoint.weight
            if best is None or weight > current[best.id]:
                best = endpoint
        assert best is not None
        current[best.id] -= total
        return best


class LeastBusy:
    """The endpoint with the fewest calls in flight; ties go round-robin."""

    def __init__(self) -> None:
        self._turn = RoundRobin()

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        fewest = min(endpoint.in_flight for endpoint in endpoints)
        return self._turn.pick([endpoint for endpoint in endpoints if endpoint.in_flight == fewest])


class FastestOfTwo:
    """Power of two choices on latency: two endpoints at random, the one with the lower moving-average latency
    times (calls in flight + 1) wins; an endpoint never measured scores 0, so each gets tried."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        count = len(endpoints)
        if count == 1:
            return endpoints[0]
        draw = self._random.random
        one = int(draw() * count)  # one C call each; randrange is several Python-level ones
        other = int(draw() * (count - 1))  # two distinct indices, cheaper than random.sample
        first, second = endpoints[one], endpoints[other + 1 if other >= one else other]
        return first if (first.latency or 0.0) * (first.in_flight + 1) <= (second.latency or 0.0) * (
            second.in_flight + 1) else second


class MostHeadroom:
    """The endpoint with the largest share of its own per-minute quota left (those without limits count as
    wholly free); ties go round-robin. Endpoints at their limit are not usable, so they are never offered."""

    def __init__(self) -> None:
        self._turn = RoundRobin()

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        room = [endpoint.headroom() for endpoint in endpoints]
        most = max(room)
        return self._turn.pick([endpoint for endpoint, left in zip(endpoints, room, strict=True) if left == most])


class WeightedRandom:
    """At random, in proportion to the weights."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        return self._random.choices(endpoints, weights=[endpoint.weight for endpoint in endpoints])[0]


class ConsistentHash:
    """Rendezvous (highest random weight) hashing of `affinity` (a header or cookie value): the same caller goes
    to the same endpoint while it is usable, and only the callers of an endpoint that leaves move; without an
    affinity value, round-robin."""

    def __init__(self) -> None:
        self._turn = RoundRobin()

    def pick(self, endpoints: Sequence[Endpoint], affinity: bytes | None = None) -> Endpoint:
        if affinity is None or len(endpoints) == 1:
            return self._turn.pick(endpoints)
        return max(endpoints, key=lambda endpoint: _score(affinity, endpoint))


def _score(affinity: bytes, endpoint: Endpoint) -> float:
    digest = hashlib.blake2b(affinity + b"\0" + endpoint.id.encode(), digest_size=8).digest()
    unit = ((int.from_bytes(digest, "big") >> 11) + 0.5) / 2.0 ** 53  # uniform in (0, 1), never 1
    return endpoint.weight / -math.log(unit)


def balancer(strategy: AnyStrategy) -> Balancer:
    """A new balancer of `strategy` (each pool keeps its own state)."""
    if strategy == "round_robin":
        return RoundRobin()
    if strategy == "weighted":
        return SmoothWeighted()
    if strategy == "least_busy":
        return LeastBusy()
    if strategy == "latency":
        return FastestOfTwo()
    if strategy == "random":
        return WeightedRandom()
    if strategy == "consistent_hash":
        return ConsistentHash()
    return MostHeadroom()
