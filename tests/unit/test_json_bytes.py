"""Encoded request bodies hold only their own size while they wait upstream."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import orjson

from sluice.json_bytes import dumps_to_size
from sluice.providers.base import UpstreamRequest

BODY = {"model": "gpt-bench", "messages": [{"role": "user", "content": "Hello there, how are you?"}]}


def _held_per_result(make: Callable[[], bytes], count: int = 500) -> float:
    tracemalloc.start()
    try:
        kept = [make() for _ in range(count)]
        held = tracemalloc.get_traced_memory()[0] - 8 * count  # less the list's pointers
    finally:
        tracemalloc.stop()
    assert len(kept) == count
    return held / count


def test_same_bytes_as_orjson() -> None:
    assert dumps_to_size(BODY) == orjson.dumps(BODY)
    assert UpstreamRequest("chat", dict(BODY)).encoded() == orjson.dumps(BODY)


def test_a_re_encoded_body_holds_about_its_own_size() -> None:
    size = len(orjson.dumps(BODY))
    assert _held_per_result(lambda: UpstreamRequest("chat", BODY).encoded()) < size + 200
    big = {"model": "m", "messages": [{"role": "user", "content": "y" * 20_000}]}
    assert _held_per_result(lambda: dumps_to_size(big), 50) < 20_200
