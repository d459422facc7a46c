"""GCRA arithmetic and the memory limiter's all-or-nothing decisions, on a clock the test controls."""

from __future__ import annotations

from sluice.limits import gcra
from sluice.limits.backend import Charge, Policy
from sluice.limits.memory import MemoryLimiter

RPM3 = Policy("key", "k:r", 3)
TOKENS = Policy("key-tokens", "k:t", 600, "tokens")
SLOTS = Policy("key-concurrency", "k:c", 1, "concurrent-requests")


def test_a_full_bucket_allows_the_quota_at_once_then_one_per_interval() -> None:
    tat = None
    for expected_remaining in (2, 1, 0):
        outcome = gcra.step(tat, 100.0, 3, 1)
        assert outcome.allowed and outcome.remaining == expected_remaining
        tat = outcome.tat
    refused = gcra.step(tat, 100.0, 3, 1)
    assert not refused.allowed and refused.retry_after == 20.0 and refused.reset == 60.0
    assert gcra.step(tat, 120.0, 3, 1).allowed


def test_cost_is_capped_at_the_quota_and_debt_refuses_even_a_free_check() -> None:
    assert gcra.step(None, 0.0, 600, 10_000).allowed
    in_debt = gcra.adjusted(None, 0.0, 600, 1800)  # 3 minutes' worth of tokens
    assert in_debt == 180.0
    refused = gcra.step(in_debt, 0.0, 600, 0)
    assert not refused.allowed and refused.retry_after == 120.0
    assert gcra.adjusted(in_debt, 0.0, 600, -5000) == 0.0  # a refund never leaves more than a full bucket


def test_memory_limiter_commits_all_or_nothing() -> None:
    limiter = MemoryLimiter()
    first = limiter.decide([Charge(RPM3), Charge(SLOTS)], 0.0)
    assert first.allowed and first.slots == ("k:c",)
    refused = limiter.decide([Charge(RPM3), Charge(SLOTS)], 0.0)
    assert not refused.allowed and refused.violated == SLOTS
    limiter.release(first)
    assert limiter.decide([Charge(RPM3)], 0.0).states[0].remaining == 1  # the refusal charged nothing
    assert limiter.decide([Charge(RPM3), Charge(SLOTS)], 0.0).allowed  # the slot is free again


def test_the_longest_wait_names_the_violated_policy() -> None:
    limiter = MemoryLimiter()
    limiter.adjust([Charge(TOKENS, 1200)])
    for _ in range(3):
        limiter.decide([Charge(RPM3)], 0.0)
    verdict = limiter.decide([Charge(RPM3), Charge(TOKENS, 1)], 0.0)
    assert not verdict.allowed and verdict.violated == TOKENS
