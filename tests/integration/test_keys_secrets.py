"""A managed key's secret is shown once and stored nowhere: not in the SQLite file, not in any PostgreSQL row, not
in error bodies, not in the gateway's logs or stdout."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import run_gateway

pytestmark = pytest.mark.anyio

ADMIN = "sk-admin-secrets-test"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
  - {name: other, provider: mock, model: mock-2}
request_log: {auto_migrate: true, flush_interval_seconds: 0.05, stdout: true, stdout_bodies: true}
keys: {cache_ttl_seconds: 0}
"""


async def _exercise(url: str) -> tuple[str, list[str]]:
    """Create a key, use it well and badly, rotate and revoke it; the secret and every reply body."""
    bodies: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        created = await client.post("/admin/keys", json={"name": "s", "models": ["mock"]},
                                    headers={"Authorization": f"Bearer {ADMIN}"})
        key = created.json()["key"]
        as_key = {"Authorization": f"Bearer {key}"}
        calls = [
            ("POST", "/v1/chat/completions", {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}, 200),
            ("POST", "/v1/chat/completions", {"model": "mock", "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}, 200),
            ("POST", "/v1/chat/completions", {"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404),
            ("POST", "/v1/chat/completions", {"model": "mock"}, 400),
            ("GET", "/admin/keys", None, 403),
            ("GET", "/v1/models", None, 200),
            ("POST", "/provider/mock/v1/x", {}, 404),
        ]
        for method, path, body, status in calls:
            reply = await client.request(method, path, json=body, headers=as_key)
            assert reply.status_code == status, (path, reply.text)
            bodies.append(reply.text)
        rotated = (await client.post(f"/admin/keys/{created.json()['id']}/rotate",
                                     headers={"Authorization": f"Bearer {ADMIN}"})).json()
        for presented in (key, rotated["key"] + "x", rotated["key"][:-1]):
            reply = await client.post("/v1/chat/completions", json={"model": "mock", "messages": []},
                                      headers={"Authorization": f"Bearer {presented}"})
            assert reply.status_code == 401
            bodies.append(reply.text)
        bodies.append((await client.get("/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                                        params={"include_revoked": "true"})).text)
        await asyncio.sleep(0.3)  # let the request log flush
    return key, bodies


def assert_not_in_files(secret: str, folder: Path) -> None:
    """Not in the SQLite file, its WAL or anything else the gateway wrote there (the pepper file included)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "sluice.db" for path in files)
    assert not any(secret.encode() in path.read_bytes() for path in files)


async def test_no_secret_in_the_database_logs_or_errors(database_url: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with run_gateway(CONFIG, admin_key=ADMIN, database_url=database_url, data_dir=str(tmp_path)) as url:
        key, bodies = await _exercise(url)
    secret = key.removeprefix("sk-sluice-")
    assert not any(secret in body for body in bodies)
    assert secret not in caplog.text
    output = capfd.readouterr()
    assert '"api_key_id":"key_' in output.out  # the request log's stdout lines name the key by id
    assert secret not in output.out and secret not in output.err
    if database_url.startswith("sqlite"):
        assert_not_in_files(secret, tmp_path)
        return
    connection = await asyncpg.connect(make_url(database_url).set(drivername="postgresql")
                                       .render_as_string(hide_password=False))
    try:
        for table in ("api_keys", "request_logs"):
            rows = [row[0] for row in await connection.fetch(f"SELECT t::text FROM {table} t")]
            assert rows and not any(secret in row for row in rows), table
    finally:
        await connection.close()


async def test_managed_keys_work_with_the_request_log_off(tmp_path: Path) -> None:
    config = CONFIG.replace("request_log: {auto_migrate: true, flush_interval_seconds: 0.05, stdout: true, "
                            "stdout_bodies: true}", "request_log: {enabled: false}")
    with run_gateway(config, admin_key=ADMIN, data_dir=str(tmp_path)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            key = (await client.post("/admin/keys", json={"name": "n"},
                                     headers={"Authorization": f"Bearer {ADMIN}"})).json()["key"]
            reply = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                      json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200
    pepper = tmp_path / "key-pepper"
    assert pepper.stat().st_mode & 0o777 == 0o600 and (tmp_path / "sluice.db").exists()
