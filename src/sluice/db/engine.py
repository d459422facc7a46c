"""The application database: an async SQLAlchemy engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from sluice.db.urls import DRIVERS, DatabaseError

if TYPE_CHECKING:
    from sluice.store.records import Record
    from sluice.store.writers import RowWriter


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
        self.timeout = timeout
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
        self._writer: RowWriter | None = None

    @property
    def writer(self) -> RowWriter:
        """The request log's inserts and retention's deletes, through the raw driver (`store/writers.py`); made on
        first use, so a database used for keys, spend or prompts only never opens one."""
        if self._writer is None:
            from sluice.store.db_writer import row_writer

            self._writer = row_writer(self)
        return self._writer

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
        from sluice.store.records import record_of

        await self.insert([record_of(row) for row in rows])

    def connect(self) -> AsyncConnection:
        """A connection for reading (`async with db.connect() as connection`)."""
        return self.engine.connect()

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction that commits on exit."""
        return self.engine.begin()

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()
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

