"""Budget periods in UTC: the `key_spend.period` key of an instant, and when that period ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sluice.limits.options import BudgetPeriod

TOTAL = "total"


def period_key(period: BudgetPeriod, when: datetime) -> str:
    """`2026-11-25` (daily), `2026-W48` (ISO week, so 2027-01-01 is `2026-W53`), `2026-11` (monthly) or `total`."""
    when = when.astimezone(UTC)
    if period == "daily":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if period == "weekly":
        year, week, _ = when.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if period == "monthly":
        return f"{when.year:04d}-{when.month:02d}"
    return TOTAL


def period_key_at(period: BudgetPeriod, timestamp: float) -> str:
    """`period_key` of a Unix time."""
    return period_key(period, datetime.fromtimestamp(timestamp, UTC))


def period_end(period: BudgetPeriod, when: datetime) -> datetime | None:
    """The first instant of the next period (when a spent budget is available again); None for `total`."""
    when = when.astimezone(UTC)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day + timedelta(days=1)
    if period == "weekly":
        return day + timedelta(days=7 - day.weekday())
    if period == "monthly":
        return day.replace(year=day.year + 1, month=1, day=1) if day.month == 12 else day.replace(month=day.month + 1,
                                                                                                 day=1)
    return None
