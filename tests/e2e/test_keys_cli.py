"""Managed keys across processes: `sluice keys …` and `sluice serve` on one SQLite file, and two gateways on one
PostgreSQL database, where a revocation reaches the other gateway within the cache TTL. Neither prints a secret."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from sluice.cli import main
from tests.e2e.test_serve import stop_group
from tests.servers import free_port

POSTGRES_ENV = "SLUICE_TEST_POSTGRES_URL"

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
  - {name: other, provider: mock, model: mock-2}
request_log: {auto_migrate: true}
keys: {managed: true, cache_ttl_seconds: 1}
"""
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SLUICE_") or name.startswith("SLUICE_TEST_")}
    return {**env, "SLUICE_DATA_DIR": str(tmp_path / "data"), "SLUICE_CONFIG": str(tmp_path / "sluice.yaml"),
            **extra}


def sluice(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`sluice ARGS` in this process (a subprocess costs seconds of imports): exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    output = capsys.readouterr()
    return code, output.out, output.err


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, for gateway subprocesses; dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    url = make_url(base).set(drivername="postgresql")
    name = f"sluice_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_execute(url.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(_execute(url.render_as_string(hide_password=False), drop))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "sluice", "serve", "--port", str(port)], env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sluice serve did not start: {log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        stop_group(process)


def chat(url: str, key: str) -> int:
    return httpx.post(url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                      timeout=10).status_code


def wait_for(url: str, key: str, status: int, within: float) -> float:
    began = time.monotonic()
    while chat(url, key) != status:
        assert time.monotonic() - began < within, f"still not {status} after {within} s"
        time.sleep(0.1)
    return time.monotonic() - began


def test_cli_keys_against_a_served_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
                                          ) -> None:
    (tmp_path / "sluice.yaml").write_text(CONFIG)
    env = _environment(tmp_path)
    for name in [name for name in os.environ if name.startswith("SLUICE_") and name not in env]:
        monkeypatch.delenv(name)
    for name in ("SLUICE_DATA_DIR", "SLUICE_CONFIG"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(tmp_path)
    code, key, err = sluice(capsys, "keys", "create", "--name", "ci", "--models", "mock", "--rpm", "600")
    assert code == 0, err
    key = key.strip()
    assert key.startswith("sk-sluice-") and "shown only this once" in err and key not in err
    assert "SLUICE_KEY_PEPPER" in caplog.text  # the pepper file was just made: a warning says it is not enough
    code, _, err = sluice(capsys, "keys", "create", "--name", "bad", "--models", "nope")
    assert code == 2 and "unknown model 'nope'" in err

    code, listed, _ = sluice(capsys, "keys", "list")
    assert code == 0 and " ci " in listed and key[:14] in listed and key not in listed
    key_id = listed.splitlines()[1].split()[0]

    with served(env, tmp_path / "gateway.log") as url:  # no SLUICE_API_KEYS: `keys: {managed: true}` suffices
        assert chat(url, key) == 200
        code, _, err = sluice(capsys, "keys", "revoke", key_id)
        assert code == 0 and f"revoked {key_id}" in err
        wait_for(url, key, 401, within=3)
        assert sluice(capsys, "keys", "rotate", key_id)[0] == 2  # revoked keys are not rotated
        second = sluice(capsys, "keys", "create", "--name", "second")[1].strip()
        second_id = sluice(capsys, "keys", "list")[1].splitlines()[1].split()[0]
        code, new, err = sluice(capsys, "keys", "rotate", second_id)
        assert code == 0, err
        assert chat(url, new.strip()) == 200
        wait_for(url, second, 401, within=3)
    assert "revoked" in sluice(capsys, "keys", "list", "--all")[1]
    assert sluice(capsys, "keys", "revoke", "key_nope")[0] == 1
    log = (tmp_path / "gateway.log").read_text()
    assert "key_" in log
    for secret in (key, second, new.strip()):
        assert secret.removeprefix("sk-sluice-") not in log


@pytest.mark.postgres
def test_revocation_reaches_a_second_gateway_within_the_ttl(tmp_path: Path, postgres_url: str) -> None:
    (tmp_path / "sluice.yaml").write_text(CONFIG)
    env = _environment(tmp_path, SLUICE_DATABASE_URL=postgres_url, SLUICE_KEY_PEPPER="shared-pepper-for-e2e",
                       SLUICE_ADMIN_KEY="sk-admin-e2e")
    admin = {"Authorization": "Bearer sk-admin-e2e"}
    with served(env, tmp_path / "a.log") as first, served(env, tmp_path / "b.log") as second:
        created = httpx.post(first + "/admin/keys", json={"name": "shared"}, headers=admin, timeout=10).json()
        key = created["key"]
        assert chat(second, key) == 200 and chat(first, key) == 200
        assert httpx.post(first + f"/admin/keys/{created['id']}/revoke", headers=admin, timeout=10).status_code == 200
        assert chat(first, key) == 401  # the instance that revoked it forgets it at once
        took = wait_for(second, key, 401, within=3)  # the other one within cache_ttl_seconds (1 s)
        assert took <= 1.5
        other = httpx.post(second + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=10)
        assert other.json()["error"]["message"] == "Incorrect API key provided."
    for log in ("a.log", "b.log"):
        assert key.removeprefix("sk-sluice-") not in (tmp_path / log).read_text()
