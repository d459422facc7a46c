"""The price table: defaults, overrides from the config, lookups, and prices that are config errors."""

from __future__ import annotations

import logging

import pytest

from sluice.config import ConfigError, parse_config
from sluice.pricing import DEFAULT_PRICES, Price, PriceTable

BASE = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
"""


def test_defaults_cover_common_models() -> None:
    table = PriceTable()
    assert table.lookup("gpt-4o-mini") == Price(input_per_million=0.15, output_per_million=0.60)
    assert table.lookup("text-embedding-3-small") == Price(input_per_million=0.02)
    for name in ("gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "text-embedding-3-large", "claude-sonnet-4",
                 "claude-3-5-haiku", "claude-opus-4-1"):
        assert table.lookup(name) is DEFAULT_PRICES[name]


def test_config_overrides_and_extends_the_defaults() -> None:
    config = parse_config(BASE + """
prices:
  gpt-4o: {input_per_million: 1.0, output_per_million: 4.0}
  mock: {input_per_million: 0.5}
  cheap-upstream: {input_per_million: "0.25", output_per_million: 1}
""", "test.yaml")
    table = PriceTable(config.prices)
    assert table.lookup("gpt-4o") == Price(input_per_million=1.0, output_per_million=4.0)
    assert table.lookup("mock") == Price(input_per_million=0.5, output_per_million=0.0)
    assert table.lookup("gpt-4o-mini") is DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup("my-alias", "cheap-upstream") == Price(input_per_million=0.25, output_per_million=1.0)
    assert table.cost("mock", None, 1_000_000, 7) == 0.5


def test_public_name_first_then_upstream_name_then_snapshot_family() -> None:
    table = PriceTable({"fast": Price(input_per_million=9)})
    assert table.lookup("fast", "gpt-4o") == Price(input_per_million=9)
    assert table.lookup("unpriced-alias", "gpt-4o") is DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("claude-sonnet-4-20250514") is DEFAULT_PRICES["claude-sonnet-4"]
    assert table.lookup("claude-3-5-haiku-latest") is DEFAULT_PRICES["claude-3-5-haiku"]


def test_cost_is_tokens_times_price_per_million() -> None:
    price = Price(input_per_million=2.5, output_per_million=10)
    assert price.cost(1000, 500) == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6, abs=1e-12)
    assert PriceTable().cost("no-such-model", None, 10, 10) is None


def test_a_missing_price_is_logged_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="sluice.pricing"):
        for _ in range(5):
            assert table.lookup("mystery", "mystery-1") is None
        table.lookup("other")
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and "'mystery'" in warnings[0] and "prices:" in warnings[0]


@pytest.mark.parametrize(("prices", "message"), [
    ("{gpt-4o: {input_per_million: -1}}",
     "prices.gpt-4o.input_per_million: Input should be greater than or equal to 0"),
    ("{gpt-4o: {input_per_million: 1, output_per_million: lots}}",
     "prices.gpt-4o.output_per_million: Input should be a valid number"),
    ("{gpt-4o: {input_per_million: .nan}}", "prices.gpt-4o.input_per_million: Input should be a finite number"),
    ("{gpt-4o: {output_per_million: 1}}", "prices.gpt-4o.input_per_million: Field required"),
    ("{gpt-4o: {input: 1}}", "prices.gpt-4o.input: Unexpected keyword argument"),
    ("{gpt-4o: 2.5}", "prices.gpt-4o: Input should be a dictionary or an instance of Price"),
])
def test_bad_prices_are_config_errors_naming_the_key_path(prices: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"prices: {prices}\n", "sluice.yaml")
    assert str(caught.value).startswith("sluice.yaml: ") and message in str(caught.value)


def test_request_log_prices_moved() -> None:
    with pytest.raises(ConfigError, match=r"request_log: prices: moved to the top-level `prices:` section"):
        parse_config(BASE + "request_log: {prices: {mock: {input_per_million: 1}}}\n", "sluice.yaml")
