"""Local allowances: units of a rate policy taken from Redis ahead of use and spent here without a round trip.

A round trip to Redis costs a worker ~200 µs of CPU (redis-py's asyncio client), more than the rest of a request.
So for a policy with a large quota, an instance takes a block of units at once (`share` of the quota) and admits
requests from it locally, refilling it in the background when half is spent. The units are charged in Redis when
they are taken, so the instances together never admit more than the quota; the cost is that an instance may hold
up to a block (and a refill) that others cannot use until it is spent or given back (after `IDLE_SECONDS` unused,
and at shutdown). Policies whose block would be under `MIN_BLOCK` units, and concurrency policies, are charged
exactly, one round trip per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.limits.backend import Policy

MIN_BLOCK = 10
"""A policy whose block would be smaller is charged exactly (a quota of 1,000 at the default 1 % share is)."""
IDLE_SECONDS = 2.0
"""An allowance unused for this long is given back to Redis."""
MAX_BLOCK_SHARE = 0.05
"""However large the requests, a block is at most this share of the quota."""


@dataclass(slots=True)
class Allowance:
    """What this instance holds of one policy: `units` taken from Redis and not yet spent, and what Redis said
    at the last grant (units left to everyone, the time the bucket is whole again) for the headers."""

    policy: Policy
    block: int
    units: int = 0
    remaining: int = 0
    reset_at: float = 0.0
    used_at: float = 0.0
    refilling: bool = False
    """A background top-up (`RedisLimiter._refill`) is in flight."""
    acquiring: bool = False
    """A request's call to Redis that tops this allowance up is in flight (others ask for their own units only)."""

    def want(self, cost: int) -> int:
        """Units to ask for beyond `cost`: a block, or four requests' worth when that is more (token charges)."""
        return min(max(self.block, 4 * cost), max(self.block, int(self.policy.quota * MAX_BLOCK_SHARE)))


def block_of(policy: Policy, share: float) -> int:
    """The units a refill takes for `policy`, or 0 when it is charged exactly."""
    if policy.concurrent:
        return 0
    block = int(policy.quota * share)
    return block if block >= MIN_BLOCK else 0
