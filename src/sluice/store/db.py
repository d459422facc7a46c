"""The request log's database: an async SQLAlchemy engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from sluice.store.records import Record, record_of
from sluice.store.urls import DRIVERS, DatabaseError
from sluice.store.writers import PostgresWriter, SqliteWriter


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
        self.writer: SqliteWriter | PostgresWriter
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.writer = SqliteWriter(self.url.database or "", self.engine, timeout)
        else:
            self.writer = PostgresWriter(self.engine)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def insert(self, records: Sequence[Record]) -> None:
        """Insert `records`, skipping any whose log id is already stored (exactly once across retries and replays).

        Raises `writers.WriteRejected` when the database refuses the data itself; anything else is worth a retry."""
        if records:
            await self.writer.insert(records)

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

