"""The request log's database: an async SQLAlchemy engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from sluice.store.records import Record, record_of
from sluice.store.tables import REQUEST_LOGS
from sluice.store.urls import DRIVERS, DatabaseError
from sluice.store.writers import RowWriter, WriteRejected, failed, open_writer, sqlite_insert, sqlite_params


def normalise_url(url: str) -> URL:
    """`url` with the async driver filled in: `sqlite://…` → aiosqlite, `postgresql://…` → asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in DRIVERS:
        parsed = parsed.set(drivername=DRIVERS[parsed.drivername])
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise DatabaseError(f"unsupported database {parsed.drivername!r}: use sqlite+aiosqlite or postgresql+asyncpg")
    return parsed


class Database:
    """One engine (and its pool) per process; `aclose` disposes of it."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        if self.is_sqlite:
            self.path = _sqlite_path(self.url)
            engine_options: dict[str, Any] = {"connect_args": {"timeout": timeout}}
        else:
            self.path = None
            engine_options = {"connect_args": {"timeout": timeout, "command_timeout": timeout},
                              "pool_size": 4, "max_overflow": 4}
        self.engine: AsyncEngine = create_async_engine(self.url, pool_pre_ping=True, **engine_options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        in_memory = self.is_sqlite and self.url.database in (None, "", ":memory:")
        self.writer: RowWriter = PooledSqliteWriter(self.engine) if in_memory else \
            open_writer(self.url.render_as_string(hide_password=False), timeout)
        """The request log's inserts and retention's deletes, through the raw driver (`writers.py`)."""

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def insert(self, records: Sequence[Record]) -> None:
        """Insert `records`, skipping any whose log id is already stored (exactly once across retries and replays).

        Raises `writers.WriteRejected` when the database refuses the data itself; anything else is worth a retry."""
        if records:
            await self.writer.insert(records)

    async def delete_older(self, older_than: datetime, limit: int) -> int:
        """Delete up to `limit` entries stamped before `older_than` (`retention.prune` repeats it)."""
        return await self.writer.delete_older(older_than, limit)

    async def insert_new(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """`insert` for decoded rows (as queries return them)."""
        await self.insert([record_of(row) for row in rows])

    def connect(self) -> AsyncConnection:
        """A connection for reading (`async with db.connect() as connection`)."""
        return self.engine.connect()

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction that commits on exit."""
        return self.engine.begin()

    async def aclose(self) -> None:
        await self.writer.aclose()
        await self.engine.dispose()


class PooledSqliteWriter:
    """The writer of an in-memory SQLite database, which only the engine's own connection can see."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert(self, records: Sequence[Record]) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.exec_driver_sql(sqlite_insert(1), [tuple(sqlite_params([record]))
                                                                    for record in records])
        except (DataError, IntegrityError) as exc:
            raise WriteRejected(str(exc.orig)) from exc
        except Exception as exc:
            raise failed(exc) from exc

    async def delete_older(self, older_than: datetime, limit: int) -> int:
        table = REQUEST_LOGS
        oldest = select(table.c.id).where(table.c.timestamp < older_than).limit(limit)
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(table).where(table.c.id.in_(oldest.scalar_subquery())))
        return max(result.rowcount, 0)

    async def aclose(self) -> None:
        return None


def _sqlite_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _sqlite_pragmas(connection: Any, _record: ConnectionPoolEntry) -> None:
    """WAL lets readers (the admin API) work while the writer writes; workers wait for each other's locks."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()

