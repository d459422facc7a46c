"""The request log's writes through the raw drivers (sqlite3, asyncpg): one fixed INSERT per batch, and retention's
DELETE. No SQLAlchemy here: the writer process imports this, and SQLAlchemy would double its memory.

SQLAlchemy stays for migrations, queries and the admin API. For the hot statement it cost more than the rest of
the request log: the INSERT compiled again for every batch, each row's JSON columns re-encoded with the stdlib
`json` and its timestamp passed through Python bind processors, all on the gateway's core. Here the statements are
built once from `columns.py`, and records (whose bodies are already JSON text) go to the driver as they are. Every
insert is `INSERT … ON CONFLICT (id) DO NOTHING`, so a retried or replayed record is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import chain
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import orjson

from sluice.store.columns import COLUMNS, KINDS
from sluice.store.options import RequestLogConfig
from sluice.store.records import TIMESTAMP, Record
from sluice.store.stamps import iso_of, sqlite_text

T = TypeVar("T")


class RowWriter(Protocol):
    """Where a `Recorder` puts its batches and a `Pruner` deletes old rows: a writer below, or a `db.Database`."""

    async def insert(self, records: Sequence[Record]) -> None:
        """Insert `records`, skipping any whose id is stored; `WriteRejected` if the data itself is refused."""

    async def delete_older(self, older_than: datetime, limit: int) -> int:
        """Delete up to `limit` rows stamped before `older_than` in one transaction; how many."""

    async def aclose(self) -> None: ...


class WriteRejected(Exception):
    """The database refused the data itself (a retry of the same rows would fail again)."""


class WriteFailed(Exception):
    """The database could not be written now (down, locked, no table yet, a broken connection): worth retrying."""


def failed(exc: BaseException) -> WriteFailed:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return WriteFailed(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


_NAMES = ", ".join(f'"{name}"' for name in COLUMNS)
_WIDTH = len(COLUMNS)
_SQLITE_ROW = "(" + ", ".join("?" * _WIDTH) + ")"
_SQLITE_MAX_ROWS = 500  # rows per INSERT statement (fewer where SQLite allows fewer parameters)


def statement_rows(count: int, full: int) -> list[int]:
    """How many rows each INSERT of a `count`-row batch takes: `full` at a time, the rest in powers of two.

    The statement sqlite3 prepares for n rows holds ~3 KB per row, and sqlite3 caches 128 of them: one per batch
    size made a writer grow by ~0.4 MB for every new size of ~130 rows (a partial batch at each flush interval,
    the end of each burst), to ~40 MB. This way a connection prepares the full statement and at most one per
    power of two."""
    sizes = [full] * (count // full)
    rest = count % full
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


@functools.lru_cache(maxsize=32)
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


SQLITE_DELETE = ('DELETE FROM request_logs WHERE "id" IN '
                 '(SELECT "id" FROM request_logs WHERE "timestamp" < ? LIMIT ?)')
"""Each batch picks its rows through the timestamp index: a short transaction, so writers interleave."""


class SqliteWriter:
    """Inserts through its own sqlite3 connection in one dedicated thread: one thread hop per batch, and the whole
    batch in one multi-row statement (its own transaction). The thread needs the GIL only to bind the parameters;
    SQLite releases it while it inserts. Each GIL hand-off between the writer thread and a busy event loop costs
    the loop a forced switch, so per-row calls (`executemany`) cost far more under load than they do here.
    A batch of `batch_rows` (the request log's `batch_size`) is one statement; other sizes are split
    (`statement_rows`). (`:memory:` databases, which a second connection cannot see, are written by
    `db.PooledSqliteWriter`.)"""

    def __init__(self, database: str, timeout: float, batch_rows: int = RequestLogConfig.batch_size) -> None:
        self.database = database
        self.timeout = timeout
        self.batch_rows = batch_rows
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._rows = min(_SQLITE_MAX_ROWS, batch_rows)

    async def insert(self, records: Sequence[Record]) -> None:
        await self._in_thread(self._insert, records)

    async def delete_older(self, older_than: datetime, limit: int) -> int:
        return await self._in_thread(self._delete_older, sqlite_text(iso_of(older_than)), limit)

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sluice-request-log")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _delete_older(self, older_than: str, limit: int) -> int:
        try:
            connection = self._connection or self._connect()
            return max(connection.execute(SQLITE_DELETE, (older_than, limit)).rowcount, 0)
        except Exception as exc:
            self._close()
            raise failed(exc) from exc

    def _insert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        try:
            connection = self._connection or self._connect()
            sizes = statement_rows(len(records), self._rows)
            if len(sizes) == 1:
                connection.execute(sqlite_insert(len(records)), sqlite_params(records))
                return
            connection.execute("BEGIN IMMEDIATE")
            try:
                start = 0
                for size in sizes:
                    chunk = records[start:start + size]
                    connection.execute(sqlite_insert(size), sqlite_params(chunk))
                    start += size
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            raise WriteRejected(str(exc)) from exc
        except Exception as exc:
            self._close()
            raise failed(exc) from exc

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.database, timeout=self.timeout, isolation_level=None,
                                     check_same_thread=False, uri=self.database.startswith("file:"))
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            connection.close()
            raise
        self._rows = min(_SQLITE_MAX_ROWS, self.batch_rows,
                         connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _WIDTH)
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


_POSTGRES_CASTS = {"json": "jsonb", "timestamp": "timestamptz", "boolean": "boolean", "integer": "integer",
                   "float": "double precision"}


def _postgres_column(index: int, name: str) -> str:
    cast = _POSTGRES_CASTS.get(KINDS[name])
    return f"(r ->> {index})::{cast}" if cast else f"r ->> {index}"


POSTGRES_INSERT = (f"INSERT INTO request_logs ({_NAMES}) SELECT "
                   + ", ".join(_postgres_column(index, name) for index, name in enumerate(COLUMNS))
                   + ' FROM jsonb_array_elements($1::text::jsonb) AS r ON CONFLICT ("id") DO NOTHING')
POSTGRES_DELETE = ('DELETE FROM request_logs WHERE "id" IN '
                   '(SELECT "id" FROM request_logs WHERE "timestamp" < $1 LIMIT $2)')
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
    """One statement per batch on a connection of its own: the batch goes as one JSON array parameter that
    PostgreSQL unpacks (`jsonb_array_elements`), so the gateway neither encodes 29 parameters per row nor waits
    for a reply per row (asyncpg's executemany cost ~8 µs of gateway CPU per row, this ~1 µs). The connection is
    kept between batches (a new one, or a pool's ping, costs more than a batch of rows) and dropped on any error.

    `dsn` and `options` are what `asyncpg.connect` takes (`postgres_arguments`)."""

    def __init__(self, dsn: str, options: dict[str, Any], timeout: float) -> None:
        self.dsn = dsn
        self.options = {"timeout": timeout, "command_timeout": timeout, **options}
        self._driver: Any = None

    async def insert(self, records: Sequence[Record]) -> None:
        payloads = postgres_payloads(records)

        async def statements(driver: Any) -> None:
            for payload in payloads:
                await driver.execute(POSTGRES_INSERT, payload)
        await self._run(statements)

    async def delete_older(self, older_than: datetime, limit: int) -> int:
        async def statement(driver: Any) -> int:
            status: str = await driver.execute(POSTGRES_DELETE, older_than, limit)  # "DELETE 42"
            return int(status.rpartition(" ")[2] or 0)
        deleted: int = await self._run(statement)
        return deleted

    async def _run(self, work: Callable[[Any], Any]) -> Any:
        """`work(connection)`; a kept connection may have been closed by the server meanwhile: one more try."""
        try:
            for attempt in (1, 2):
                reused = self._driver is not None
                driver = self._driver if reused else await self._connect()
                try:
                    return await work(driver)
                except Exception as exc:
                    if str(getattr(exc, "sqlstate", ""))[:2] in _REJECTED_CLASSES:
                        raise WriteRejected(f"{type(exc).__name__}: {exc}") from exc
                    self._drop()
                    if not reused or attempt == 2:
                        raise
                except BaseException:  # cancelled: the write timed out in the middle of a statement
                    self._drop()
                    raise
        except WriteRejected:
            raise
        except Exception as exc:  # could not connect, the connection broke, the table is missing …
            raise failed(exc) from exc
        raise AssertionError("unreachable")

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # imported when first used: SQLite deployments never need it

        self._driver = await asyncpg.connect(self.dsn, **self.options)
        return self._driver

    def _drop(self) -> None:
        """Forget the connection without reusing it (it may be in the middle of a statement)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.terminate()

    async def aclose(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(driver.close(), 5)
            if not driver.is_closed():
                driver.terminate()


def postgres_arguments(url: str) -> tuple[str, dict[str, Any]]:
    """A `postgresql[+asyncpg]://` URL as `asyncpg.connect` arguments, as SQLAlchemy's asyncpg dialect passes them:
    the query's parameters (`?ssl=require`) become keyword arguments."""
    parts = urlsplit(url)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    if "prepared_statement_cache_size" in options:
        options["prepared_statement_cache_size"] = int(options["prepared_statement_cache_size"])
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", "")), options


def sqlite_database(url: str) -> str:
    """The file a `sqlite[+aiosqlite]:///path` URL names (`''` or `:memory:` for an in-memory database)."""
    path = unquote(urlsplit(url).path)
    return path[1:] if path.startswith("/") else path


def open_writer(url: str, timeout: float, batch_rows: int = RequestLogConfig.batch_size
                ) -> SqliteWriter | PostgresWriter:
    """The writer for a database URL that `urls.check_url` accepted (it connects on first use)."""
    if url.partition("://")[0].partition("+")[0] == "sqlite":
        return SqliteWriter(sqlite_database(url), timeout, batch_rows)
    dsn, options = postgres_arguments(url)
    return PostgresWriter(dsn, options, timeout)
