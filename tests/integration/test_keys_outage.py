"""The key store's database down or stalled: managed lookups answer 503 quickly, cached answers and static keys
keep working, and the gateway recovers when the database is back. Managed keys need no request log."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.keys.hashing import new_secret
from sluice.keys.records import KeySettings
from sluice.keys.store import KeyStore
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PEPPER = "pepper-for-the-outage-tests"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {enabled: false}
keys: {cache_ttl_seconds: 30, lookup_timeout_seconds: 0.5}
"""
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}


async def _status(client: httpx.AsyncClient, key: str) -> tuple[int, float]:
    began = time.monotonic()
    reply = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    if reply.status_code == 503:
        assert reply.json()["error"] == {"message": "The API key store is unavailable; try again later.",
                                         "type": "server_error", "param": None, "code": "service_unavailable"}
    return reply.status_code, time.monotonic() - began


async def test_database_down_then_stalled_then_back(postgres_url: str, tmp_path: Path) -> None:
    direct = Database(postgres_url)
    await upgrade(direct)
    key = (await KeyStore(direct, PEPPER.encode()).create(KeySettings(name="outage"))).key
    await direct.aclose()
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.up()
    via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    unknown, other = new_secret(), new_secret()
    try:
        with run_gateway(CONFIG, database_url=via_proxy, key_pepper=PEPPER, data_dir=str(tmp_path)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                assert (await _status(client, key))[0] == 200
                assert (await _status(client, unknown))[0] == 401

                await proxy.down()
                assert (await _status(client, key))[0] == 200  # cached: no database round-trip
                assert (await _status(client, unknown))[0] == 401  # misses are cached too
                status, took = await _status(client, other)
                assert status == 503 and took < 2
                assert (await _status(client, DEV_KEY))[0] == 200  # static keys never touch the database

                await proxy.hang()
                status, took = await _status(client, other)
                assert status == 503 and took < 2

                await proxy.down()
                await proxy.up()
                assert (await _status(client, other))[0] == 401
    finally:
        await proxy.down()
    assert not (tmp_path / "sluice.db").exists()  # the request log is off and the keys live in PostgreSQL
