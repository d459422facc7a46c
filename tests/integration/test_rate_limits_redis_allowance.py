"""Local allowances of the Redis limiter: most requests cost no round trip, yet instances sharing Redis never
admit more than the quota between them, and an instance gives back what it holds when idle or closing."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from sluice.limits.backend import Charge, Policy
from sluice.limits.redis_backend import RedisLimiter
from tests.conftest import DEV_KEY, MOCK_CONFIG, run_gateway
from tests.limits_support import needs_redis, redis_backend

pytestmark = [pytest.mark.redis, needs_redis]


def fail(operation: str, error: BaseException) -> None:
    raise AssertionError(f"{operation} failed: {error}")


def limiter(url: str, prefix: str, share: float = 0.01) -> RedisLimiter:
    return RedisLimiter(url, prefix, 0.5, fail, share=share)


def round_trips(url: str) -> int:
    """Scripts Redis has run so far (every limiter call is one EVALSHA)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.anyio
async def test_two_instances_never_admit_more_than_the_quota_between_them() -> None:
    quota = 3000  # 30-unit blocks at the default 1 % share: both instances hold allowances
    policy = Policy("key", "rl:k:shared:r", quota)
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        url = backend.settings["redis_url"]
        one, two = limiter(url, prefix), limiter(url, prefix)
        started = time.monotonic()
        admitted = {one: 0, two: 0}

        async def drain(instance: RedisLimiter) -> None:
            refusals = 0
            while refusals < 3:  # a refusal while the other still holds units; then both are dry
                if (await instance.acquire([Charge(policy)])).allowed:
                    admitted[instance] += 1
                    refusals = 0
                else:
                    refusals += 1
                    await asyncio.sleep(0)

        await asyncio.gather(*(drain(instance) for instance in (one, two) for _ in range(4)))
        elapsed = time.monotonic() - started
        await one.aclose()
        await two.aclose()
    refilled = elapsed * quota / 60  # GCRA gives back a unit every 20 ms
    total = admitted[one] + admitted[two]
    assert admitted[one] > 0 and admitted[two] > 0
    assert quota - 1 <= total <= quota + refilled + 1


@pytest.mark.anyio
async def test_a_large_quota_costs_a_round_trip_per_block_not_per_request() -> None:
    policies = [Policy("ip", "rl:ip:127.0.0.1:r", 100_000_000), Policy("key", "rl:k:big:r", 1_000_000),
                Policy("key-tokens", "rl:k:big:t", 100_000_000, "tokens")]
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        url = backend.settings["redis_url"]
        instance, exact = limiter(url, prefix), limiter(url, prefix + "exact:", share=0)
        before = round_trips(url)
        for _ in range(1000):
            verdict = await instance.acquire([Charge(policies[0]), Charge(policies[1]), Charge(policies[2], 300)])
            assert verdict.allowed
        local = round_trips(url) - before
        before = round_trips(url)
        for _ in range(50):
            assert (await exact.acquire([Charge(policy) for policy in policies])).allowed
        exact_trips = round_trips(url) - before
        stored = redis.Redis.from_url(url).get(prefix + "rl:k:big:r")
        await instance.aclose()
        await exact.aclose()
    assert exact_trips >= 50  # share 0: every request asks Redis
    assert local <= 10  # the first request, then a refill per half block (10,000 requests) at most
    assert stored is not None  # the units this instance spent were charged in Redis first


@pytest.mark.anyio
async def test_requests_that_find_an_allowance_empty_at_once_take_one_block_between_them() -> None:
    policy = Policy("key-tokens", "rl:k:rush:t", 10_000_000, "tokens")  # 100,000-token blocks
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        url = backend.settings["redis_url"]
        instance = limiter(url, prefix)
        verdicts = await asyncio.gather(*(instance.acquire([Charge(policy, 300)]) for _ in range(32)))
        held = instance._allowances[policy.key].units
        await instance.aclose()
    assert all(verdict.allowed for verdict in verdicts)
    assert held <= 100_000  # one block, less what the requests spent; not one block each


@pytest.mark.anyio
async def test_what_an_instance_holds_goes_back_when_it_closes_and_when_it_idles() -> None:
    quota = 1200  # a unit every 50 ms; 12-unit blocks
    policy = Policy("key", "rl:k:held:r", quota)
    with redis_backend() as backend:
        prefix = backend.yaml.split("'")[1]
        url = backend.settings["redis_url"]
        holder, idle, other = limiter(url, prefix), limiter(url, prefix), limiter(url, prefix)
        await idle.start()

        async def drain() -> int:
            count = 0
            while (await other.acquire([Charge(policy)])).allowed:
                count += 1
            return count

        assert (await holder.acquire([Charge(policy)])).allowed  # takes a block beyond its one unit
        assert (await idle.acquire([Charge(policy)])).allowed
        await drain()
        await holder.aclose()
        given_back = await drain()
        await asyncio.sleep(2.6)  # the idle instance's sweep gives its block back after 2 s unused
        given_back_idle = await drain()
        await idle.aclose()
        await other.aclose()
    assert given_back >= 11
    assert given_back_idle >= 11


def test_through_the_gateway_headers_count_down_with_local_allowances() -> None:
    with redis_backend() as backend:
        text = MOCK_CONFIG + f"limits: {{{backend.yaml}, default_key: {{requests_per_minute: 100000}}}}\n"
        with run_gateway(text, **backend.settings) as url, httpx.Client(base_url=url, timeout=10) as http:
            body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"Authorization": f"Bearer {DEV_KEY}"}
            replies = [http.post("/v1/chat/completions", json=body, headers=headers) for _ in range(5)]
    assert [reply.status_code for reply in replies] == [200] * 5
    left = [int(reply.headers["x-ratelimit-remaining"]) for reply in replies]
    assert left == sorted(left, reverse=True) and len(set(left)) == 5
    assert all(replies[0].headers["x-ratelimit-limit"] == "100000" for _ in replies)
    assert 100000 - 5 <= left[-1] <= left[0] <= 100000 - 1, left
