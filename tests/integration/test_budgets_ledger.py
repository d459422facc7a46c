"""The spend ledger on a real database: failed writes keep their charges, instances agree within the TTL, and
a burst of checks reads the database once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.db.tables import KEY_SPEND
from sluice.errors import QuotaExceeded, ServiceUnavailable
from sluice.keys.principal import Principal
from sluice.limits.budgets import BudgetLedger
from sluice.limits.options import Budget
from sluice.pricing import Price, PriceTable
from sluice.providers.mock import chat_chunks, chat_reply
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.usage import usage_of
from tests.request_log_support import make_exchange

pytestmark = pytest.mark.anyio

PRICES = PriceTable({"mock": Price(input_per_million=2.0, output_per_million=5.0)}, defaults=False)
KEY = Principal(key_id="key-ledger", budget=Budget(usd=1.0, period="total"))


def _charged(index: int, principal: Principal = KEY) -> Any:
    exchange = make_exchange(index, key_id=principal.key_id)
    exchange.principal = principal
    return exchange


def _cost(exchanges: list[Any]) -> float:
    total = 0.0
    for exchange in exchanges:
        usage = usage_of(exchange)
        assert usage is not None
        total += PRICES.cost("mock", None, usage.prompt, usage.completion) or 0.0
    return total


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.aclose()


async def _stored(db: Database) -> list[tuple[Any, ...]]:
    async with db.connect() as connection:
        query = select(KEY_SPEND.c.key_id, KEY_SPEND.c.period, KEY_SPEND.c.spent_usd, KEY_SPEND.c.requests)
        return [tuple(row) for row in (await connection.execute(query)).all()]


async def test_a_failed_write_keeps_its_charges_until_the_database_takes_them(db: Database) -> None:
    metrics = Metrics()
    ledger = BudgetLedger(db, PRICES, metrics)
    exchanges = [_charged(index) for index in range(5)]
    for exchange in exchanges[:3]:
        ledger.observe(exchange)
    assert await ledger.flush() is False  # no key_spend table yet
    for exchange in exchanges[3:]:
        ledger.observe(exchange)
    assert await ledger.spent(KEY.key_id, Budget(usd=1, period="total")) == pytest.approx(_cost(exchanges))
    assert metrics.budget_failures.labels("write")._value.get() == 1
    assert metrics.budget_failures.labels("read")._value.get() == 1  # and the check went on (fail open)
    await upgrade(db)
    assert await ledger.flush() is True
    assert await _stored(db) == [("key-ledger", "total", pytest.approx(_cost(exchanges), rel=1e-12), 5)]
    await ledger.aclose()


async def test_fail_closed_refuses_while_the_spend_cannot_be_read(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    ledger = BudgetLedger(db, PRICES, Metrics(), owns_db=True, fail_open=False)
    with pytest.raises(ServiceUnavailable):
        await ledger.check(KEY)
    await ledger.aclose()


async def test_instances_agree_within_the_ttl_and_a_burst_reads_once(db: Database) -> None:
    await upgrade(db)
    budget = Budget(usd=0.00001, period="daily")
    principal = Principal(key_id="key-shared", budget=budget)
    one = BudgetLedger(db, PRICES, Metrics(), ttl_seconds=0.3)
    other = BudgetLedger(db, PRICES, Metrics(), ttl_seconds=0.3)
    queries: list[str] = []

    def count(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM key_spend" in statement:
            queries.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    await asyncio.gather(*(other.check(principal) for _ in range(50)))
    assert len(queries) == 1
    exchanges = [_charged(index, principal) for index in range(3)]
    for exchange in exchanges:
        one.observe(exchange)
    assert _cost(exchanges) >= budget.usd
    with pytest.raises(QuotaExceeded):  # this instance counts its own charges before they are written
        await one.check(principal)
    await one.flush()
    await other.check(principal)  # the other one still has its view of the stored spend (within the TTL)
    await asyncio.sleep(0.35)
    with pytest.raises(QuotaExceeded) as refused:
        await other.check(principal)
    assert refused.value.status == 429 and refused.value.code == "insufficient_quota"
    assert len(queries) == 3  # the burst, `one`'s check, and `other`'s check after the TTL
    event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    await one.aclose()
    await other.aclose()


async def test_keys_without_a_budget_and_refused_requests_are_not_charged(db: Database) -> None:
    await upgrade(db)
    ledger = BudgetLedger(db, PRICES, Metrics())
    unbudgeted = _charged(1, Principal(key_id="key-free"))
    refused = make_exchange(2, key_id=KEY.key_id, status=429)
    refused.principal, refused.response_body = KEY, b'{"error": {"code": "insufficient_quota"}}'
    for exchange in (unbudgeted, refused):
        ledger.observe(exchange)
    await ledger.aclose()
    assert await _stored(db) == []


async def test_replies_without_usage_are_charged_an_estimate(db: Database) -> None:
    """A stream without `include_usage` (or an upstream that reports none) is not free: ~4 bytes per token."""
    await upgrade(db)
    ledger = BudgetLedger(db, PRICES, Metrics())
    streamed = _charged(1)
    body = orjson.loads(streamed.request_body or b"")
    streamed.stream, streamed.response_body = True, None
    streamed.chunks = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks(body, 3, False)]
    streamed.chunks.append(b"data: [DONE]\n\n")
    plain = _charged(2)
    plain.response_body = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                             "content": "x" * 41}}]})
    for exchange in (streamed, plain):
        assert usage_of(exchange) is None
        ledger.observe(exchange)
    await ledger.aclose()
    text = chat_reply(body)["choices"][0]["message"]["content"]
    prompt = sum(-(-len(exchange.request_body or b"") // 4) for exchange in (streamed, plain))
    completion = -(-len(text.encode()) // 4) + 11
    async with db.connect() as connection:
        row = (await connection.execute(select(KEY_SPEND.c.requests, KEY_SPEND.c.prompt_tokens,
                                               KEY_SPEND.c.completion_tokens, KEY_SPEND.c.spent_usd))).one()
    assert tuple(row) == (2, prompt, completion, pytest.approx((prompt * 2.0 + completion * 5.0) / 1e6))
