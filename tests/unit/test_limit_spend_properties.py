"""The limiters' `spend` (the common admission: allowed, no slot, no Verdict) against their general `decide`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.limits.backend import Charge, Policy
from sluice.limits.memory import MemoryLimiter

POLICIES = (Policy("key", "k:r", 5), Policy("key-tokens", "k:t", 600, "tokens"), Policy("ip", "ip:r", 3),
            Policy("key-concurrency", "k:c", 2, "concurrent-requests"))
charges = st.lists(st.tuples(st.sampled_from(POLICIES), st.integers(0, 900)), min_size=1, max_size=3,
                   unique_by=lambda pair: pair[0].key).map(lambda pairs: [Charge(p, c) for p, c in pairs])
steps = st.lists(st.tuples(charges, st.floats(0, 30)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(steps)
def test_spend_is_decide_when_allowed_without_slots_and_commits_nothing_otherwise(sequence: list[
        tuple[list[Charge], float]]) -> None:
    general, lean = MemoryLimiter(), MemoryLimiter()
    now = 100.0
    for found, step in sequence:
        now += step
        states = lean.spend(found, now)
        verdict = general.decide(found, now)
        if verdict.allowed and not verdict.slots:
            assert states == verdict.states
        else:
            assert states is None
            if verdict.allowed:  # the general way took slots: give them back so both hold the same state
                general.release(verdict)
                for charge in found:  # and the rate charges it committed, which `spend` did not
                    if not charge.policy.concurrent:
                        lean.decide([charge], now)
        assert lean._tats == general._tats and lean._in_use == general._in_use
