"""Spend not yet in the database: one charge per key and budget period."""

from __future__ import annotations

from dataclasses import dataclass

SpendKey = tuple[str, str]
"""(key_id, period)."""


@dataclass(slots=True)
class Charge:
    """Spend not yet in the database for one key and period."""

    usd: float = 0.0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Charge) -> None:
        self.usd += other.usd
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
