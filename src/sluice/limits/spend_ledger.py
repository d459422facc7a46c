"""The `key_spend` table's reads and its one write: an atomic upsert that adds charges (never read-modify-write)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from sluice.db.engine import Database
from sluice.db.tables import KEY_SPEND
from sluice.limits.spend import Charge, SpendKey


class SpendStore:
    """Reads and adds to `key_spend` rows; every instance sharing the database adds to the same rows."""

    def __init__(self, db: Database) -> None:
        self.db = db
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        statement = insert(KEY_SPEND)
        spend, excluded = KEY_SPEND.c, statement.excluded
        self._upsert = statement.on_conflict_do_update(
            index_elements=[spend.key_id, spend.period],
            set_={
                "spent_usd": spend.spent_usd + excluded.spent_usd,
                "requests": spend.requests + excluded.requests,
                "prompt_tokens": spend.prompt_tokens + excluded.prompt_tokens,
                "completion_tokens": spend.completion_tokens + excluded.completion_tokens,
                "updated_at": excluded.updated_at,
            },
        )

    async def add(self, charges: Mapping[SpendKey, Charge], now: datetime) -> None:
        """Add every charge in one transaction; rows in key order, so concurrent writers lock in the same order."""
        rows = [{"key_id": key_id, "period": period, "spent_usd": charge.usd, "requests": charge.requests,
                 "prompt_tokens": charge.prompt_tokens, "completion_tokens": charge.completion_tokens,
                 "updated_at": now}
                for (key_id, period), charge in sorted(charges.items())]
        if rows:
            async with self.db.begin() as connection:
                await connection.execute(self._upsert, rows)

    async def spent(self, key_id: str, period: str) -> float:
        """The stored spend of one key in one period (one primary-key lookup); 0 when there is no row."""
        query = select(KEY_SPEND.c.spent_usd).where(KEY_SPEND.c.key_id == key_id, KEY_SPEND.c.period == period)
        async with self.db.connect() as connection:
            value = (await connection.execute(query)).scalar_one_or_none()
        return float(value or 0.0)

    async def rows(self, *, key_id: str | None = None, period: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """Stored rows, most recently charged first."""
        query = select(KEY_SPEND).order_by(KEY_SPEND.c.updated_at.desc(), KEY_SPEND.c.key_id, KEY_SPEND.c.period)
        if key_id is not None:
            query = query.where(KEY_SPEND.c.key_id == key_id)
        if period is not None:
            query = query.where(KEY_SPEND.c.period == period)
        async with self.db.connect() as connection:
            result = await connection.execute(query.limit(limit))
            return [dict(row) for row in result.mappings()]
