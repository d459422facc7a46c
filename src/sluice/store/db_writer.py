"""The request log's writer for a `db.engine.Database`: the raw driver's (`writers.py`), or the engine's own
connection for an in-memory SQLite database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.db.engine import Database
from sluice.db.tables import REQUEST_LOGS
from sluice.store.records import Record
from sluice.store.writers import RowWriter, WriteRejected, failed, open_writer, sqlite_insert, sqlite_params


def row_writer(db: Database) -> RowWriter:
    """The writer of `db`'s request log rows."""
    if db.is_sqlite and db.url.database in (None, "", ":memory:"):
        return PooledSqliteWriter(db.engine)
    return open_writer(db.url.render_as_string(hide_password=False), db.timeout)


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
