"""Two `sluice serve` processes on one PostgreSQL database charge one key concurrently: the
key's spend row ends at exactly the sum of what every request used (no lost updates)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sluice.db.engine import Database
from sluice.db.tables import KEY_SPEND
from tests.e2e.test_serve import stop_group
from tests.integration.conftest import fresh_postgres_database, needs_postgres
from tests.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, needs_postgres]

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
prices:
  mock: {input_per_million: 3.0, output_per_million: 7.0}
limits:
  default_budget: {usd: 1000, period: total}
request_log: {enabled: false, auto_migrate: true}
"""
KEY = "sk-e2e-budget"
PEPPER = "pepper-shared-by-both-e2e-instances"
REQUESTS = 240


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _start(config: Path, database: str, tmp_path: Path, name: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "SLUICE_API_KEYS": KEY, "SLUICE_DATABASE_URL": database,
           "SLUICE_DATA_DIR": str(tmp_path / name),
           "SLUICE_KEY_PEPPER": PEPPER}  # instances share the pepper, so a key has one id everywhere (docs/keys.md)
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice", "serve", "--config", str(config), "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return f"http://127.0.0.1:{port}", process


def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "sluice serve did not start"
        time.sleep(0.1)


def _chat(client: httpx.Client, urls: list[str], index: int) -> tuple[int, int]:
    """One request to one of the instances; the prompt and completion tokens it reported."""
    words = " ".join(["word"] * (1 + index % 7))
    reply = client.post(f"{urls[index % len(urls)]}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                        json={"model": "mock", "messages": [{"role": "user", "content": words}]})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


async def _row(database: str) -> tuple[float, int, int, int] | None:
    db = Database(database)
    try:
        async with db.connect() as connection:
            found = (await connection.execute(select(
                KEY_SPEND.c.spent_usd, KEY_SPEND.c.requests, KEY_SPEND.c.prompt_tokens,
                KEY_SPEND.c.completion_tokens))).all()
    finally:
        await db.aclose()
    assert len(found) <= 1, found
    return tuple(found[0]) if found else None  # type: ignore[return-value]


async def test_two_instances_hammering_one_key_lose_no_spend(tmp_path: Path) -> None:
    config = tmp_path / "sluice.yaml"
    config.write_text(CONFIG)
    async with fresh_postgres_database() as database:
        started = [_start(config, database, tmp_path, name) for name in ("a", "b")]
        try:
            for url, process in started:
                _wait_up(url, process)
            urls = [url for url, _ in started]
            with httpx.Client(timeout=20) as client, ThreadPoolExecutor(16) as pool:
                usages = list(pool.map(lambda index: _chat(client, urls, index), range(REQUESTS)))
            prompt = sum(p for p, _ in usages)
            completion = sum(c for _, c in usages)
            expected = sum((p * 3.0 + c * 7.0) / 1e6 for p, c in usages)
            deadline = time.monotonic() + 10
            while (row := await _row(database)) is None or row[1] < REQUESTS:
                assert time.monotonic() < deadline, f"spend not written in time: {row}"
                await asyncio.sleep(0.2)
            assert row[1:] == (REQUESTS, prompt, completion)
            assert row[0] == pytest.approx(expected, rel=1e-9)
        finally:
            for _, process in started:
                stop_group(process)
        assert await _row(database) == row  # shutdown had nothing left to write, and wrote nothing twice
