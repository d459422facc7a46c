"""The token estimate charged before a call (corrected with the reported usage afterwards)."""

from __future__ import annotations

from sluice.limits.tokens import DEFAULT_COMPLETION_TOKENS, estimate_tokens


def test_prompt_bytes_over_four_plus_the_reply_allowance() -> None:
    assert estimate_tokens({"messages": [], "max_tokens": 50}, 400) == 150
    assert estimate_tokens({"messages": [], "max_completion_tokens": 20, "max_tokens": 50}, 400) == 120
    assert estimate_tokens({"messages": []}, 400) == 100 + DEFAULT_COMPLETION_TOKENS


def test_embeddings_have_no_reply_allowance() -> None:
    assert estimate_tokens({"model": "e", "input": "hello"}, 40) == 11
