"""Budget period keys and resets at their UTC boundaries (month ends, ISO weeks across a year boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sluice.limits.budgets import quota_message
from sluice.limits.options import Budget, BudgetPeriod
from sluice.limits.periods import period_end, period_key, period_key_at


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("when", "period", "key"), [
    ("2026-11-25T13:00:00", "daily", "2026-11-25"),
    ("2026-11-25T13:00:00", "weekly", "2026-W48"),
    ("2026-11-25T13:00:00", "monthly", "2026-11"),
    ("2026-11-25T13:00:00", "total", "total"),
    ("2026-01-31T23:59:59.999999", "monthly", "2026-01"),
    ("2026-02-01T00:00:00", "monthly", "2026-02"),
    ("2024-02-29T12:00:00", "daily", "2024-02-29"),
    ("2026-12-31T23:59:59", "daily", "2026-12-31"),
    # ISO weeks: 2027-01-01 is a Friday, in week 53 of ISO year 2026; 2027-W01 starts on Monday 2027-01-04.
    ("2026-12-28T00:00:00", "weekly", "2026-W53"),
    ("2027-01-01T10:00:00", "weekly", "2026-W53"),
    ("2027-01-03T23:59:59", "weekly", "2026-W53"),
    ("2027-01-04T00:00:00", "weekly", "2027-W01"),
    # 2024-12-30 (a Monday) already belongs to ISO year 2025.
    ("2024-12-30T00:00:00", "weekly", "2025-W01"),
    ("2024-12-29T23:59:59", "weekly", "2024-W52"),
])
def test_period_keys(when: str, period: BudgetPeriod, key: str) -> None:
    assert period_key(period, _at(when)) == key
    assert period_key_at(period, _at(when).timestamp()) == key


def test_keys_are_utc_whatever_the_zone_of_the_instant() -> None:
    tokyo = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # still 30 November in UTC
    assert period_key("monthly", tokyo) == "2026-11"
    assert period_key("daily", tokyo) == "2026-11-30"


@pytest.mark.parametrize(("when", "period", "end"), [
    ("2026-11-25T13:00:00", "daily", "2026-11-26T00:00:00"),
    ("2026-12-31T23:59:59", "daily", "2027-01-01T00:00:00"),
    ("2026-11-25T13:00:00", "weekly", "2026-11-30T00:00:00"),
    ("2026-11-30T00:00:00", "weekly", "2026-12-07T00:00:00"),  # a Monday: the week that starts now ends next Monday
    ("2027-01-01T10:00:00", "weekly", "2027-01-04T00:00:00"),
    ("2026-01-31T23:59:59", "monthly", "2026-02-01T00:00:00"),
    ("2026-12-15T00:00:00", "monthly", "2027-01-01T00:00:00"),
])
def test_period_ends(when: str, period: BudgetPeriod, end: str) -> None:
    ends = period_end(period, _at(when))
    assert ends == _at(end)
    assert period_key(period, ends - timedelta(microseconds=1)) == period_key(period, _at(when))
    assert period_key(period, ends) != period_key(period, _at(when))


def test_total_never_ends() -> None:
    assert period_end("total", _at("2026-11-25T13:00:00")) is None


def test_quota_messages() -> None:
    now = _at("2026-11-25T13:00:00")
    assert quota_message(Budget(usd=10, period="monthly"), now) == (
        "You exceeded your current quota: this key's monthly budget of $10.00 is spent; it resets at "
        "2026-12-01 00:00 UTC.")
    assert "budget of $0.000125 is spent" in quota_message(Budget(usd=0.000125, period="daily"), now)
    assert quota_message(Budget(usd=5, period="total"), now).endswith("total budget of $5.00 is spent; it does not "
                                                                      "reset.")
