"""Alembic migrations run from code: `sluice db upgrade`, and at start-up for SQLite; one process at a time.

Alembic is imported inside the functions: it adds ~11 MB to a process's resident memory (measured in a
worker), and a worker that never migrates (PostgreSQL, or the request log off) should not carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

from sluice.db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

    from sluice.store.options import RequestLogConfig

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 0x51CE_0001


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; concurrent callers (server workers) wait for each other."""
    async with _file_lock(db):
        async with db.begin() as connection:
            if db.dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            await connection.run_sync(_upgrade, revision)


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with db.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@contextlib.asynccontextmanager
async def _file_lock(db: Database) -> AsyncIterator[None]:
    if db.path is None:
        yield
        return
    handle = await asyncio.to_thread(open, db.path.with_name(db.path.name + ".migrate-lock"), "a")
    with handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def migrate_at_start(config: RequestLogConfig, db: Database | None) -> None:
    """Run the migrations if the config asks for it (by default for SQLite; other databases: `sluice db upgrade`)."""
    if db is not None and (config.auto_migrate or (config.auto_migrate is None and db.is_sqlite)):
        await upgrade(db)
