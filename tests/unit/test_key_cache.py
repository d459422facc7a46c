"""The lookup cache: entries expire after the TTL, and its size stays bounded whatever callers present."""

from __future__ import annotations

from sluice.keys.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_for_the_ttl() -> None:
    clock = Clock()
    cache: TTLCache[str] = TTLCache(5, 10, clock)
    cache.put("a", "alpha")
    clock.now += 4.9
    assert cache.get("a") == "alpha"
    clock.now += 0.2
    assert cache.get("a") is None and len(cache) == 0


def test_the_oldest_entries_make_room() -> None:
    cache: TTLCache[bool] = TTLCache(60, 100, Clock())
    for index in range(10_000):
        cache.put(f"random-{index}", True)
    assert len(cache) == 100
    assert cache.get("random-9999") and cache.get("random-9900") and cache.get("random-9899") is None
    cache.clear()
    assert len(cache) == 0


def test_a_zero_ttl_caches_nothing() -> None:
    cache: TTLCache[bool] = TTLCache(0, 100, Clock())
    cache.put("a", True)
    assert cache.get("a") is None and len(cache) == 0
