"""A fresh request-log database for each "request log on" variant of bench/run.py, removed afterwards.

SQLite: `SLUICE_DATA_DIR` is a new temporary directory (Sluice migrates its `sluice.db` at start-up).
PostgreSQL: a database `sluice_bench_<random>` is created on the server of `BENCH_POSTGRES_URL` (else
`SLUICE_TEST_POSTGRES_URL`, else postgresql://postgres@127.0.0.1:5432/postgres), migrated with `sluice db upgrade`,
handed to Sluice as `SLUICE_DATABASE_URL`, and dropped afterwards. Once Sluice is connected, `pin_backends` moves
the server processes that serve that database to the load core at idle priority: in production the database has a
machine of its own; left to the scheduler, they take cycles from the gateway's core in some runs, and pinned at
normal priority they starve wrk and the upstream (this is a 2-core machine)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from targets import BENCH, ROOT

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


class Unavailable(RuntimeError):
    """The variant's database cannot be had here (the reason is the message)."""


def server_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("SLUICE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(url: str, statement: str) -> list[int]:
    import asyncpg  # the bench runs on Sluice's venv, which has it

    connection = await asyncpg.connect(url, timeout=5)
    try:
        if statement.startswith("SELECT"):
            return [int(row[0]) for row in await connection.fetch(statement)]
        await connection.execute(statement)
        return []
    finally:
        await connection.close()


def pin_backends(env: dict[str, str], cpus: str) -> int:
    """Pin the PostgreSQL processes serving the database in `env` (if any) to `cpus`; how many were pinned."""
    url = env.get("SLUICE_DATABASE_URL")
    if not url:
        return 0
    name = urlsplit(url).path.lstrip("/")
    server = server_url().replace("postgresql+asyncpg://", "postgresql://")
    pids = asyncio.run(_admin(server, f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"))
    for pid in pids:  # on the load core, and only when wrk and the upstream leave it idle (SCHED_IDLE)
        subprocess.run(["taskset", "-pc", cpus, str(pid)], capture_output=True, check=False)
        subprocess.run(["chrt", "--idle", "-p", "0", str(pid)], capture_output=True, check=False)
    return len(pids)


@contextlib.contextmanager
def environment(database: str | None) -> Iterator[dict[str, str]]:
    """The environment variables that point Sluice's request log at a fresh `database` ("sqlite", "postgresql")."""
    if database is None:
        yield {}
    elif database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sluice-bench-log-") as folder:
            yield {"SLUICE_DATA_DIR": folder}
    elif database == "postgresql":
        with _postgres() as url:
            yield {"SLUICE_DATABASE_URL": url}
    else:
        raise ValueError(f"unknown request log database {database!r}")


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    server = server_url().replace("postgresql+asyncpg://", "postgresql://")
    name = f"sluice_bench_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError) as exc:
        raise Unavailable(f"PostgreSQL at {urlsplit(server).hostname} not reachable ({exc})") from exc
    except Exception as exc:  # asyncpg's own errors (authentication, permissions)
        raise Unavailable(f"cannot create a database ({type(exc).__name__}: {exc})") from exc
    url = _with_database(server, name)
    try:
        command = [str(ROOT / ".venv/bin/sluice"), "db", "upgrade", "--config", str(BENCH / "sluice-bench.yaml")]
        env = {**os.environ, "SLUICE_DATABASE_URL": url, "BENCH_UPSTREAM": "http://127.0.0.1:9"}
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env)
        if out.returncode != 0:
            raise Unavailable(f"`sluice db upgrade` failed: {(out.stderr or out.stdout).strip()[-300:]}")
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
