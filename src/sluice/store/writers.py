"""The request log's insert: one fixed statement per batch through the raw driver, never SQLAlchemy Core.

SQLAlchemy stays for migrations, queries, retention and the admin API. For this one hot statement it cost more
than the rest of the request log: the INSERT compiled again for every batch, each row's JSON columns re-encoded
with the stdlib `json` and its timestamp passed through Python bind processors, all on the gateway's core. Here the
statements are built once from the table, and records (whose bodies are already JSON text) go to the driver as
they are. Every statement is `INSERT … ON CONFLICT (id) DO NOTHING`, so a retried or replayed record is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import Boolean, Float, Integer
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluice.store.records import TIMESTAMP, Record
from sluice.store.stamps import sqlite_text
from sluice.store.tables import COLUMNS, JSON_COLUMNS, REQUEST_LOGS, UTCDateTime


class WriteRejected(Exception):
    """The database refused the data itself (a retry of the same rows would fail again)."""


class WriteFailed(Exception):
    """The database could not be written now (down, locked, no table yet, a broken connection): worth retrying."""


def _failed(exc: BaseException) -> WriteFailed:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return WriteFailed(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


_NAMES = ", ".join(f'"{name}"' for name in COLUMNS)
_WIDTH = len(COLUMNS)
_SQLITE_ROW = "(" + ", ".join("?" * _WIDTH) + ")"
_SQLITE_MAX_ROWS = 500  # rows per INSERT statement (fewer where SQLite allows fewer parameters)


@functools.lru_cache(maxsize=256)
def sqlite_insert(rows: int) -> str:
    """`INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING` for `rows` rows."""
    return (f"INSERT INTO request_logs ({_NAMES}) VALUES {', '.join([_SQLITE_ROW] * rows)} "
            'ON CONFLICT ("id") DO NOTHING')


def sqlite_params(records: Sequence[Record]) -> list[Any]:
    """The parameters of `sqlite_insert(len(records))`: the records one after another, timestamps as SQLAlchemy's
    SQLite text."""
    params = list(chain.from_iterable(records))
    for index in range(TIMESTAMP, len(params), _WIDTH):
        params[index] = sqlite_text(params[index])
    return params


class SqliteWriter:
    """Inserts through its own sqlite3 connection in one dedicated thread: one thread hop per batch, and the whole
    batch in one multi-row statement (its own transaction). The thread needs the GIL only to bind the parameters;
    SQLite releases it while it inserts. Each GIL hand-off between the writer thread and a busy event loop costs
    the loop a forced switch, so per-row calls (`executemany`) cost far more under load than they do here.
    `:memory:` databases, which a second connection cannot see, go through the engine's pool instead."""

    def __init__(self, database: str, engine: AsyncEngine, timeout: float) -> None:
        self.database = database
        self.engine = engine
        self.timeout = timeout
        self.pooled = database in ("", ":memory:")
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._rows = _SQLITE_MAX_ROWS

    async def insert(self, records: Sequence[Record]) -> None:
        if self.pooled:
            await _pooled_insert(self.engine, records)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sluice-request-log")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._insert, records)

    def _insert(self, records: Sequence[Record]) -> None:
        try:
            connection = self._connection or self._connect()
            if len(records) <= self._rows:
                connection.execute(sqlite_insert(len(records)), sqlite_params(records))
                return
            connection.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(records), self._rows):
                    chunk = records[start:start + self._rows]
                    connection.execute(sqlite_insert(len(chunk)), sqlite_params(chunk))
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            raise WriteRejected(str(exc)) from exc
        except Exception as exc:
            self._close()
            raise _failed(exc) from exc

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.database, timeout=self.timeout, isolation_level=None,
                                     check_same_thread=False, uri=self.database.startswith("file:"))
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            connection.close()
            raise
        self._rows = min(_SQLITE_MAX_ROWS, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _WIDTH)
        self._connection = connection
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    async def aclose(self) -> None:
        if self._executor is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._executor, self._close), 5)
        self._executor.shutdown(wait=False)
        self._executor = None


async def _pooled_insert(engine: AsyncEngine, records: Sequence[Record]) -> None:
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(sqlite_insert(1), [tuple(sqlite_params([record])) for record in records])
    except (DataError, IntegrityError) as exc:
        raise WriteRejected(str(exc.orig)) from exc
    except Exception as exc:
        raise _failed(exc) from exc


def _postgres_column(index: int, name: str) -> str:
    if name in JSON_COLUMNS:
        return f"(r ->> {index})::jsonb"
    kind = REQUEST_LOGS.c[name].type
    cast = ("timestamptz" if isinstance(kind, UTCDateTime) else "boolean" if isinstance(kind, Boolean)
            else "integer" if isinstance(kind, Integer) else "double precision" if isinstance(kind, Float) else "")
    return f"(r ->> {index})::{cast}" if cast else f"r ->> {index}"


POSTGRES_INSERT = (f"INSERT INTO request_logs ({_NAMES}) SELECT "
                   + ", ".join(_postgres_column(index, name) for index, name in enumerate(COLUMNS))
                   + ' FROM jsonb_array_elements($1::text::jsonb) AS r ON CONFLICT ("id") DO NOTHING')
_PAYLOAD_BYTES = 64 * 1024 * 1024  # PostgreSQL refuses a jsonb value over 256 MB
_REJECTED_CLASSES = ("22", "23")  # SQLSTATE classes: data exception, integrity constraint violation


def postgres_payloads(records: Sequence[Record]) -> list[str]:
    """The records as one JSON array (the bodies as JSON strings: PostgreSQL parses them), split in halves until
    each part is under `_PAYLOAD_BYTES`."""
    payload = orjson.dumps(records)
    if len(payload) <= _PAYLOAD_BYTES or len(records) == 1:
        return [payload.decode()]
    half = len(records) // 2
    return postgres_payloads(records[:half]) + postgres_payloads(records[half:])


class PostgresWriter:
    """One statement per batch on a pooled asyncpg connection: the batch goes as one JSON array parameter that
    PostgreSQL unpacks (`jsonb_array_elements`), so the gateway neither encodes 29 parameters per row nor waits
    for a reply per row (asyncpg's executemany cost ~8 µs of gateway CPU per row, this ~1 µs). The connection is
    kept between batches (a checkout with its ping costs more than a batch of rows) and dropped on any error."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None

    async def insert(self, records: Sequence[Record]) -> None:
        payloads = postgres_payloads(records)
        try:
            for attempt in (1, 2):
                reused = self._driver is not None
                driver = self._driver if reused else await self._connect()
                try:
                    for payload in payloads:
                        await driver.execute(POSTGRES_INSERT, payload)
                    return
                except Exception as exc:
                    if str(getattr(exc, "sqlstate", ""))[:2] in _REJECTED_CLASSES:
                        raise WriteRejected(f"{type(exc).__name__}: {exc}") from exc
                    await self._drop()
                    if not reused or attempt == 2:
                        raise  # a kept connection may have been closed by the server meanwhile: one more try
                except BaseException:  # cancelled: the write timed out in the middle of a statement
                    await self._drop()
                    raise
        except WriteRejected:
            raise
        except Exception as exc:  # the pool could not connect, the connection broke, the table is missing …
            raise _failed(exc) from exc

    async def _connect(self) -> Any:
        connection = await self.engine.connect()
        try:
            driver = (await connection.get_raw_connection()).driver_connection
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._driver = connection, driver
        return driver

    async def _drop(self) -> None:
        """Forget the connection without reusing it (it may be in the middle of a statement)."""
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def aclose(self) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
