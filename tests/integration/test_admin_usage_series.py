"""`GET /admin/usage/series` through a served gateway, on SQLite and on PostgreSQL: a point per bucket per group,
counts, tokens, cost and latency percentiles (percentile_cont semantics on both), the bucket bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.exchange import Exchange
from tests.conftest import run_gateway
from tests.request_log_support import make_exchange, seed

pytestmark = pytest.mark.anyio
ADMIN = "sk-admin-series-test"
PRICES = {"mock": {"input_per_million": 1000.0, "output_per_million": 2000.0}}
START = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=10, second=0, microsecond=0)
"""Recent (retention prunes what is older than 30 days), and minutes 10-12 of one hour."""


def _exchange(index: int, minute: int, latency_ms: float, *, model: str = "mock", key_id: str = "key-a",
              status: int = 200, service: str | None = None) -> Exchange:
    started = (START + timedelta(minutes=minute, seconds=index % 50)).timestamp()
    exchange = make_exchange(index, text="the same words", started_at=started, model=model, key_id=key_id,
                             status=status)
    exchange.latency_total = latency_ms / 1000
    if service is not None:
        exchange.operation, exchange.provider, exchange.model, exchange.upstream_model = "service", service, None, None
    return exchange


async def _seed(database_url: str) -> list[dict[str, Any]]:
    db = Database(database_url)
    await upgrade(db)
    rows = await seed(db, [
        _exchange(0, 0, 10), _exchange(1, 0, 20), _exchange(2, 0, 30, status=500), _exchange(3, 0, 40),
        _exchange(4, 2, 100, key_id="key-b"),
        _exchange(5, 1, 5, model="other"), _exchange(6, 1, 15, model="other"),
        _exchange(7, 1, 7, service="users"),
    ], prices=PRICES)
    await db.aclose()
    return rows


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, Any]]]]:
    rows = await _seed(database_url)
    with run_gateway(admin_key=ADMIN, database_url=database_url) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            yield client, rows


async def _series(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    reply = await client.get("/admin/usage/series", params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _at(minute: int) -> str:
    return (START + timedelta(minutes=minute)).isoformat()


async def test_a_point_per_minute_per_model(admin: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, rows = admin
    body = await _series(client, group_by="model", bucket="minute", since=_at(0), until=_at(3))
    assert body["bucket"] == "minute"
    series = {entry["group"]: entry["points"] for entry in body["series"]}
    assert set(series) == {"mock", "other"}  # the service's exchange has no model
    mock = series["mock"]
    assert [point["t"] for point in mock] == [_at(0), _at(1), _at(2)]
    assert [point["requests"] for point in mock] == [4, 0, 1]
    assert [point["errors"] for point in mock] == [1, 0, 0]
    first = mock[0]
    assert (first["latency_p50_ms"], first["latency_p95_ms"], first["latency_p99_ms"]) == (25.0, 38.5, 39.7)
    assert first["prompt_tokens"] == 4 * rows[0]["prompt_tokens"] > 0
    assert first["completion_tokens"] == 4 * rows[0]["completion_tokens"] > 0
    assert first["cost_usd"] == pytest.approx(4 * rows[0]["cost_usd"]) and first["cost_usd"] > 0
    assert mock[1] == {"t": _at(1), "requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "cost_usd": 0.0, "latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None}
    assert mock[2]["latency_p99_ms"] == 100.0
    other = series["other"][1]
    assert (other["requests"], other["latency_p50_ms"], other["latency_p95_ms"]) == (2, 10.0, 14.5)


async def test_groups_by_key_provider_and_service(admin: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, _ = admin
    window = {"bucket": "hour", "since": _at(-10), "until": _at(50)}
    by_key = await _series(client, group_by="key", **window)
    assert {entry["group"]: [p["requests"] for p in entry["points"]] for entry in by_key["series"]} == {
        "key-a": [7], "key-b": [1]}
    [mock_hour] = [entry["points"][0] for entry in by_key["series"] if entry["group"] == "key-a"]
    assert mock_hour["t"] == _at(-10)  # the start of the UTC hour
    by_provider = await _series(client, group_by="provider", **window)
    assert [(entry["group"], entry["points"][0]["requests"]) for entry in by_provider["series"]] == [("mock", 7)]
    assert by_provider["series"][0]["points"][0]["latency_p50_ms"] == 20.0  # of 5, 10, 15, 20, 30, 40, 100
    by_service = await _series(client, group_by="service", **window)
    assert [(entry["group"], entry["points"][0]["requests"]) for entry in by_service["series"]] == [("users", 1)]
    filtered = await _series(client, group_by="model", model="other", **window)
    assert [entry["group"] for entry in filtered["series"]] == ["other"]


async def test_at_most_two_thousand_buckets(admin: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, _ = admin
    too_many = await client.get("/admin/usage/series", params={"bucket": "minute", "since": _at(-3000),
                                                               "until": _at(0)})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "since"
    assert (await client.get("/admin/usage/series", params={"group_by": "colour"})).status_code == 400
    default = await _series(client, bucket="day")  # the last 60 days, today's bucket last
    assert len(default["series"][0]["points"]) in (60, 61)
    assert (await client.get("/admin/usage/series", headers={"Authorization": ""})).status_code == 401
