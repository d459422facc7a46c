"""`Pool`: the endpoints one model (or, later, one service) is served by, and the strategy that picks among them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from time import monotonic

from sluice.routing.balance import Balancer
from sluice.routing.endpoint import Endpoint


class Pool:
    """Endpoints and their balancer; `pick` offers only usable endpoints the caller may reach, not yet tried."""

    __slots__ = ("endpoints", "_balancer", "_single")

    def __init__(self, endpoints: Sequence[Endpoint], balancer: Balancer) -> None:
        self.endpoints = tuple(endpoints)
        self._balancer = balancer
        self._single = self.endpoints[0] if len(self.endpoints) == 1 else None

    def replace(self, endpoints: Sequence[Endpoint]) -> None:
        """Serve from `endpoints` from now on (a service's instances added or removed while running); calls in
        flight on a dropped endpoint finish on it."""
        chosen = tuple(endpoints)
        self.endpoints, self._single = chosen, chosen[0] if len(chosen) == 1 else None

    def pick(self, tried: Collection[Endpoint], providers: frozenset[str] | None = None,
             affinity: bytes | None = None) -> Endpoint | None:
        """The endpoint for the next try, or None when none is left (all tried, unusable or out of scope)."""
        return self.choose(tried, providers, affinity)[0]

    def choose(self, tried: Collection[Endpoint], providers: frozenset[str] | None = None,
               affinity: bytes | None = None) -> tuple[Endpoint | None, bool]:
        """`pick`'s endpoint, and whether another would be left to offer after it (what a failover needs to know
        before the try, found in the same pass over the endpoints)."""
        single = self._single
        if single is not None:  # the common case: one deployment, no list built
            if tried or not single.usable or (providers is not None and single.owner not in providers):
                return None, False
            return single, False
        endpoints = self.endpoints
        if not tried and providers is None:  # the first try: when every endpoint is usable, no list is built
            for endpoint in endpoints:
                if not endpoint.usable:
                    break
            else:
                return self._balancer.pick(endpoints, affinity), True
        offered = [endpoint for endpoint in endpoints
                   if endpoint not in tried and endpoint.usable
                   and (providers is None or endpoint.owner in providers)]
        if not offered:
            return None, False
        return self._balancer.pick(offered, affinity), len(offered) > 1

    def reachable_by(self, providers: frozenset[str] | None) -> bool:
        """Whether any endpoint's provider is within a key's provider scope (None: every provider)."""
        return providers is None or any(endpoint.owner in providers for endpoint in self.endpoints)

    def retry_in(self) -> float:
        """Seconds until the first refusing breaker lets a probe through (0 if none is refusing)."""
        waits = [endpoint.guard.breaker.retry_at for endpoint in self.endpoints if endpoint.guard.breaker is not None]
        now = monotonic()
        return max(0.0, min((wait - now for wait in waits), default=0.0))
