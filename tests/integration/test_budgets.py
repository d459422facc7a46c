"""Budgets in a served gateway on SQLite and PostgreSQL: spend from real usage, 429 once spent, periods, prices."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import insert, select
from starlette.applications import Starlette

from sluice.db.engine import Database
from sluice.db.tables import KEY_SPEND, REQUEST_LOGS
from sluice.keys.hashing import key_hash, static_key_id
from sluice.limits.options import BudgetPeriod
from sluice.limits.periods import period_key
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

pytestmark = pytest.mark.anyio

ADMIN = "sk-admin-budgets"
BUDGET_KEY = "sk-budgeted-key"
PEPPER = "pepper-of-the-budget-tests"
DEV_KEY_ID = static_key_id(key_hash(PEPPER.encode(), DEV_KEY))
CONFIG = """
providers:
  up: {{type: openai, base_url: "{upstream}/v1", api_key: upstream-key}}
models:
  - {{name: gpt-test, provider: up, model: gpt-test}}
  - {{name: unpriced, provider: up, model: gpt-unpriced}}
prices:
  gpt-test: {{input_per_million: 3.0, output_per_million: 7.0}}
limits:
  default_budget: {{usd: {default_usd}, period: monthly}}
static_keys:
  - {{key: {key}, name: budgeted, budget: {{usd: 0.0001, period: daily}}}}
metrics: {{require_key: false}}
request_log: {{enabled: {log}, database_url: "{database}", auto_migrate: true, flush_interval_seconds: 0.05}}
"""
HELLO = [{"role": "user", "content": "hello there"}]
COST = (2 * 3.0 + 3 * 7.0) / 1e6
"""The fake upstream counts words: "hello there" is 2 prompt tokens, "echo: hello there" 3 completion tokens."""


@pytest.fixture
def upstream() -> Iterator[str]:
    app: Starlette = create_fake_openai()
    with serve(app) as url:
        yield url


def _config(upstream: str, database: str, *, default_usd: float = 1.0, log: bool = True) -> str:
    return CONFIG.format(upstream=upstream, database=database, default_usd=default_usd, key=BUDGET_KEY,
                         log=str(log).lower())


def _sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def _spend(url: str, key_id: str, count: int, period: BudgetPeriod = "daily", within: float = 5.0) -> dict[str, Any]:
    """The key's spend row of the current `period` from /admin/spend, once it counts `count` requests."""
    deadline = time.monotonic() + within
    params = {"key_id": key_id, "period": period_key(period, datetime.now(UTC))}
    while True:
        reply = httpx.get(url + "/admin/spend", params=params,
                          headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()["data"]
        if rows and rows[0]["requests"] >= count or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)


def _listed(url: str, **params: str) -> dict[str, Any]:
    reply = httpx.get(url + "/admin/spend", params=params, headers={"Authorization": f"Bearer {ADMIN}"})
    assert reply.status_code == 200, reply.text
    listed: dict[str, Any] = reply.json()
    return listed


def _passthrough(url: str, stream: bool) -> int:
    return httpx.post(url + "/provider/up/chat/completions", headers={"Authorization": f"Bearer {BUDGET_KEY}"},
                      json={"model": "gpt-test", "messages": HELLO, "stream": stream}).status_code


async def _insert_spend(database: str, key_id: str, period: str, usd: float) -> None:
    db = Database(database)
    try:
        async with db.begin() as connection:
            await connection.execute(insert(KEY_SPEND).values(
                key_id=key_id, period=period, spent_usd=usd, requests=1, prompt_tokens=0, completion_tokens=0,
                updated_at=datetime.now(UTC)))
    finally:
        await db.aclose()


async def test_spend_is_usage_times_price_and_a_spent_budget_is_insufficient_quota(
        upstream: str, database_url: str) -> None:
    with run_gateway(_config(upstream, database_url), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        sdk = _sdk(url, BUDGET_KEY)
        for _ in range(2):
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        for _ in range(2):  # streamed, with the usage chunk
            list(sdk.chat.completions.create(model="gpt-test", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                             stream_options={"include_usage": True}))
        with pytest.raises(openai.RateLimitError) as refused:  # 4 × $0.000027 ≥ $0.0001
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        row = _spend(url, "budgeted", 4)
        other = _sdk(url, DEV_KEY).chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert refused.value.status_code == 429 and refused.value.code == "insufficient_quota"
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "insufficient_quota"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert body["message"] == ("You exceeded your current quota: this key's daily budget of $0.0001 is spent; it "
                               f"resets at {tomorrow} 00:00 UTC.")
    assert row["period"] == period_key("daily", datetime.now(UTC)) and row["object"] == "key_spend"
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (4, 8, 12)
    assert row["spent_usd"] == pytest.approx(4 * COST, rel=1e-12)
    assert other.choices[0].message.content == "echo: hello there"  # another key is not affected


async def test_default_budget_for_env_keys_and_an_earlier_period_does_not_count(
        upstream: str, database_url: str) -> None:
    now = datetime.now(UTC)
    last_month = period_key("monthly", now.replace(day=1) - timedelta(days=1))
    with run_gateway(_config(upstream, database_url, default_usd=0.00005), keys=(DEV_KEY,), admin_key=ADMIN,
                     key_pepper=PEPPER) as url:
        await _insert_spend(database_url, DEV_KEY_ID, last_month, 100.0)
        sdk = _sdk(url, DEV_KEY)
        sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # $0.000054 ≥ $0.00005 after this one
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        row = _spend(url, DEV_KEY_ID, 2, "monthly")
        listed, by_period = _listed(url), _listed(url, period=last_month)
    assert refused.value.code == "insufficient_quota" and "monthly budget of $0.00005" in refused.value.message
    assert row["period"] == period_key("monthly", now) and row["spent_usd"] == pytest.approx(2 * COST, rel=1e-12)
    assert listed["object"] == "list" and listed["has_more"] is False
    assert sorted(entry["period"] for entry in listed["data"]) == sorted([last_month, row["period"]])
    assert [entry["spent_usd"] for entry in by_period["data"]] == [100.0]


async def test_spend_stored_by_another_instance_is_seen(upstream: str, database_url: str) -> None:
    """The stored spend counts, not only this process's: a row at the budget refuses the very first request."""
    with run_gateway(_config(upstream, database_url), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        await _insert_spend(database_url, "budgeted", period_key("daily", datetime.now(UTC)), 0.0001)
        with pytest.raises(openai.RateLimitError) as refused:
            _sdk(url, BUDGET_KEY).chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert refused.value.code == "insufficient_quota"


async def test_a_missing_price_never_fails_a_request(upstream: str, database_url: str) -> None:
    with run_gateway(_config(upstream, database_url), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        def missing() -> float:
            for line in httpx.get(url + "/metrics").text.splitlines():
                if line.startswith('sluice_price_missing_total{model="unpriced"}'):
                    return float(line.split()[-1])
            return 0.0

        before = missing()
        sdk = _sdk(url, BUDGET_KEY)
        for _ in range(3):
            reply = sdk.chat.completions.create(model="unpriced", messages=HELLO)  # type: ignore[arg-type]
            assert reply.choices[0].message.content == "echo: hello there"
        after = missing()
        row = _spend(url, "budgeted", 3)
        db = Database(database_url)
        try:
            deadline = time.monotonic() + 5
            while True:
                async with db.connect() as connection:
                    costs = (await connection.execute(select(REQUEST_LOGS.c.cost_usd, REQUEST_LOGS.c.total_tokens)
                                                      .where(REQUEST_LOGS.c.model == "unpriced"))).all()
                if len(costs) == 3 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            await db.aclose()
    assert (before, after) == (0.0, 3.0)
    assert [tuple(cost) for cost in costs] == [(None, 5)] * 3
    assert (row["requests"], row["prompt_tokens"], row["spent_usd"]) == (3, 6, 0.0)


async def test_budgets_work_with_the_request_log_off(upstream: str, database_url: str) -> None:
    with run_gateway(_config(upstream, database_url, log=False), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        sdk = _sdk(url, BUDGET_KEY)
        for _ in range(4):
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        row = _spend(url, "budgeted", 4)
    assert row["spent_usd"] == pytest.approx(4 * COST, rel=1e-12)


async def test_the_admin_key_cannot_call_models(upstream: str, tmp_path: Any) -> None:
    """SLUICE_ADMIN_KEY opens /admin only, so it cannot spend outside every budget."""
    with run_gateway(_config(upstream, f"sqlite+aiosqlite:///{tmp_path}/spend.db"), admin_key=ADMIN) as url:
        with pytest.raises(openai.AuthenticationError) as refused:
            _sdk(url, ADMIN).chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"


async def test_passthrough_calls_are_charged_by_the_model_they_name(upstream: str, database_url: str) -> None:
    with run_gateway(_config(upstream, database_url), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        for stream in (False, True):  # the stream asks for no usage: it is charged an estimate
            assert _passthrough(url, stream) == 200
        row = _spend(url, "budgeted", 2)
    assert row["prompt_tokens"] > 2 and row["completion_tokens"] > 3
    assert row["spent_usd"] == pytest.approx((row["prompt_tokens"] * 3.0 + row["completion_tokens"] * 7.0) / 1e6)


def _create_key(url: str, body: dict[str, Any]) -> tuple[str, str]:
    """A managed key made through the admin API: (its secret, its id)."""
    created = httpx.post(url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10, json=body)
    assert created.status_code == 201, created.text
    return created.json()["key"], created.json()["id"]


async def test_a_managed_key_has_its_budget_enforced_and_its_spend_listed(upstream: str, database_url: str) -> None:
    with run_gateway(_config(upstream, database_url), keys=(DEV_KEY,), admin_key=ADMIN) as url:
        key, key_id = _create_key(url, {"name": "capped", "budget": {"usd": 0.00005, "period": "weekly"}})
        sdk = _sdk(url, key)
        for _ in range(2):  # $0.000054 ≥ $0.00005 after the second
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
        row = _spend(url, key_id, 2, "weekly")
    assert refused.value.code == "insufficient_quota" and "weekly budget of $0.00005 is spent" in refused.value.message
    assert row["requests"] == 2 and row["spent_usd"] == pytest.approx(2 * COST, rel=1e-12)
