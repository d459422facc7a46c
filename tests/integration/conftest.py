"""Fixtures for the request log: a fresh SQLite file or a fresh PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

POSTGRES_ENV = "SLUICE_TEST_POSTGRES_URL"
needs_postgres = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV),
                                    reason=f"{POSTGRES_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")


@contextlib.asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """Create a database for one test and yield its asyncpg URL; it is dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    url = make_url(base)
    name = f"sluice_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, needs_postgres])])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Tests that take this fixture run once on a SQLite file and once on a PostgreSQL database of their own."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/sluice.db"
        return
    async with fresh_postgres_database() as url:
        yield url
