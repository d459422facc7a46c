"""The Alembic migrations build exactly the schema the models describe, JSONB and indexes on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from sluice.db.engine import Database
from sluice.db.migrate import current_revision, head_revision, upgrade
from sluice.db.tables import Base

pytestmark = pytest.mark.anyio


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    assert await current_revision(db) is None
    await upgrade(db)
    assert await current_revision(db) == head_revision()
    async with db.connect() as connection:
        assert await connection.run_sync(_differences) == []
        indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("request_logs"))
    assert {index["name"] for index in indexes} >= {"ix_request_logs_timestamp_id", "ix_request_logs_key_timestamp",
                                                    "ix_request_logs_model_timestamp", "ix_request_logs_trace_id"}
    await db.aclose()


@pytest.mark.postgres
async def test_postgres_bodies_are_jsonb(postgres_url: str) -> None:
    db = Database(postgres_url)
    await upgrade(db)
    async with db.connect() as connection:
        result = await connection.execute(text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'request_logs' "
            "AND column_name IN ('request_headers', 'request_body', 'response_body', 'timestamp')"))
        types = {name: kind for name, kind in result}
    assert types == {"request_headers": "jsonb", "request_body": "jsonb", "response_body": "jsonb",
                     "timestamp": "timestamp with time zone"}
    await db.aclose()


async def test_workers_starting_together_migrate_once(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(4)]
    await asyncio.gather(*(upgrade(db) for db in databases))
    assert await current_revision(databases[0]) == head_revision()
    await asyncio.gather(*(db.aclose() for db in databases))
