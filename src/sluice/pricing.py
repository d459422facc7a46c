"""The price table: USD per million tokens by model, built-in defaults merged with the config's `prices:`.

The request log's `cost_usd`, the `sluice_cost_usd` metric and key budgets all price usage with this one table.
A model without a price is never an error at request time: its cost is unknown (None), which is logged once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge

logger = logging.getLogger("sluice.pricing")
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|latest)$")
"""Anthropic's dated snapshots (`claude-sonnet-4-20250514`) and `-latest` aliases share the family's price."""
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. A plain dataclass (pydantic validates it in sluice.yaml's `prices:`), so the request
    log's writer process prices usage without importing pydantic."""

    __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}

    input_per_million: Annotated[float, Ge(0)]
    output_per_million: Annotated[float, Ge(0)] = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The USD cost of this many tokens, rounded to 1e-10 (as stored in the request log)."""
        total = prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        return round(total / 1_000_000, 10)


def _price(input_per_million: float, output_per_million: float = 0.0) -> Price:
    return Price(input_per_million=input_per_million, output_per_million=output_per_million)


DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI list prices (standard tier, uncached input), USD per million tokens.
    "gpt-5": _price(1.25, 10.0),
    "gpt-5-mini": _price(0.25, 2.0),
    "gpt-5-nano": _price(0.05, 0.40),
    "gpt-4.1": _price(2.0, 8.0),
    "gpt-4.1-mini": _price(0.40, 1.60),
    "gpt-4.1-nano": _price(0.10, 0.40),
    "gpt-4o": _price(2.50, 10.0),
    "gpt-4o-mini": _price(0.15, 0.60),
    "o1": _price(15.0, 60.0),
    "o3": _price(2.0, 8.0),
    "o3-mini": _price(1.10, 4.40),
    "o4-mini": _price(1.10, 4.40),
    "text-embedding-3-small": _price(0.02),
    "text-embedding-3-large": _price(0.13),
    "text-embedding-ada-002": _price(0.10),
    # Anthropic list prices (base input, no cache writes or reads), USD per million tokens.
    "claude-opus-4-5": _price(5.0, 25.0),
    "claude-opus-4-1": _price(15.0, 75.0),
    "claude-opus-4": _price(15.0, 75.0),
    "claude-3-opus": _price(15.0, 75.0),
    "claude-sonnet-4-5": _price(3.0, 15.0),
    "claude-sonnet-4": _price(3.0, 15.0),
    "claude-3-7-sonnet": _price(3.0, 15.0),
    "claude-3-5-sonnet": _price(3.0, 15.0),
    "claude-haiku-4-5": _price(1.0, 5.0),
    "claude-3-5-haiku": _price(0.80, 4.0),
    "claude-3-haiku": _price(0.25, 1.25),
}
"""Defaults to override: list prices change, and a contract or a reseller may charge something else."""


class PriceTable:
    """Prices by public model name, then by upstream model name; the configured entries win over the defaults."""

    def __init__(self, configured: Mapping[str, Price] | None = None, *, defaults: bool = True,
                 warn_missing: bool = True) -> None:
        """`warn_missing`: log a model without a price (once); off in the helper processes, whose gateway worker
        says it already."""
        self.prices: dict[str, Price] = {**(DEFAULT_PRICES if defaults else {}), **(configured or {})}
        self._found: dict[tuple[str | None, str | None], Price | None] = {}
        self._warn = warn_missing

    def lookup(self, model: str | None, upstream_model: str | None = None) -> Price | None:
        """The price of a request for `model` (served as `upstream_model`), or None; a miss is logged once."""
        key = (model, upstream_model)
        try:
            return self._found[key]
        except KeyError:
            pass
        price = self._find(model) or self._find(upstream_model)
        if price is None and self._warn and model:  # a service call or passthrough names no model: no price to miss
            logger.warning("no price for model %r (upstream %r): its requests have no cost and are not charged "
                           "to budgets; add it under `prices:` in the config", model, upstream_model)
        if len(self._found) >= _CACHE_SIZE:
            self._found.clear()
        self._found[key] = price
        return price

    def cost(self, model: str | None, upstream_model: str | None, prompt_tokens: int,
             completion_tokens: int) -> float | None:
        """The USD cost of the tokens, or None when the model has no price."""
        price = self.lookup(model, upstream_model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)

    def _find(self, name: str | None) -> Price | None:
        if not name:
            return None
        price = self.prices.get(name)
        if price is None:
            family = _SNAPSHOT_SUFFIX.sub("", name)
            price = self.prices.get(family) if family != name else None
        return price
