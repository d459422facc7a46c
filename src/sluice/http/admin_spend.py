"""`GET /admin/spend`: what each key has spent per budget period (the `key_spend` rows), for admins only."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from sluice.db.errors import database_errors
from sluice.errors import GatewayError
from sluice.http.admin_auth import AdminAccess
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit

logger = logging.getLogger("sluice.http")
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AddressLimit, AdminAccess])


class KeySpendEntry(BaseModel):
    object: Literal["key_spend"] = "key_spend"
    key_id: str
    period: str
    """`2026-11-25` (daily), `2026-W48` (ISO week), `2026-11` (monthly) or `total`."""
    spent_usd: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    updated_at: datetime


class KeySpendList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeySpendEntry]
    has_more: bool


@router.get("/spend", response_model=KeySpendList)
async def spend(
    gateway: CurrentGateway,
    key_id: str | None = None,
    period: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> KeySpendList:
    """Spend per key and period, most recently charged first; this instance's pending charges are written
    first (other instances write theirs within about a second)."""
    ledger = gateway.budgets
    try:
        await ledger.flush()
        rows = await ledger.store.rows(key_id=key_id, period=period, limit=limit + 1)
    except database_errors() as exc:
        logger.warning("admin spend: database query failed: %s", exc)
        raise GatewayError("The spend database is unavailable; try again later.", status=503,
                           code="spend_unavailable") from None
    return KeySpendList(data=[KeySpendEntry.model_validate(row) for row in rows[:limit]], has_more=len(rows) > limit)
