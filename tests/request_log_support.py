"""Helpers for the request log tests: realistic exchanges, recorders on real databases, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import func, select

from sluice.db.engine import Database
from sluice.db.tables import REQUEST_LOGS
from sluice.exchange import Exchange
from sluice.keys.hashing import key_hash
from sluice.pricing import Price, PriceTable
from sluice.providers.mock import chat_chunks, chat_reply
from sluice.store.options import RequestLogConfig
from sluice.store.recorder import Recorder
from sluice.store.records import RecordBuilder
from sluice.store.spill import SpillFile

KEY = "sk-test-key"
KEY_HASH = key_hash(b"pepper-of-the-request-log-tests", KEY)
"""The key's identifier as authentication derives it (`Principal.key_hash`), which the request path copies."""


def chat_body(text: str, *, stream: bool = False, model: str = "mock") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def make_exchange(index: int, *, stream: bool = False, text: str | None = None, started_at: float | None = None,
                  key_id: str = "key-test", project: str | None = None, model: str = "mock",
                  status: int = 200, chunk_size: int = 7) -> Exchange:
    """An exchange as the edge fills it in: the request bytes, and the reply bytes or the relayed SSE bytes."""
    body = chat_body(text or f"hello number {index}", stream=stream, model=model)
    exchange = Exchange(
        request_id=f"req-{index:05d}", endpoint="/v1/chat/completions", method="POST",
        started_at=started_at if started_at is not None else time.time(), operation="chat", key_id=key_id,
        key_hash=KEY_HASH,
        provider="mock", model=model, upstream_model="mock-1", project=project, stream=stream, status=status,
        request_headers=[(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json"),
                         (b"cookie", b"session=secret")],
        request_body=orjson.dumps(body), latency_total=0.012, latency_upstream=0.010, trace_id=f"{index:032x}",
    )
    if stream:
        wire = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks(body, 4, True))
        wire += b"data: [DONE]\n\n"
        exchange.chunks = [wire[start:start + chunk_size] for start in range(0, len(wire), chunk_size)]
        exchange.time_to_first_token = 0.004
    else:
        exchange.response_body = orjson.dumps(chat_reply(body))
    return exchange


def recorder_config(**overrides: Any) -> RequestLogConfig:
    """Fast timings for tests; stdout off unless asked for."""
    values: dict[str, Any] = {"batch_size": 20, "flush_interval_seconds": 0.05, "buffer_size": 100,
                              "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2, "write_timeout_seconds": 2,
                              "shutdown_timeout_seconds": 2, "stdout": False, "retention_days": None}
    values.update(overrides)
    return TypeAdapter(RequestLogConfig).validate_python(values)


def make_recorder(db: Database | None, spill: Path, **overrides: Any) -> Recorder:
    return Recorder(recorder_config(**overrides), db, SpillFile(spill))


async def count_rows(db: Database) -> int:
    async with db.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(REQUEST_LOGS))).scalar_one())


async def request_ids(db: Database) -> list[str]:
    async with db.connect() as connection:
        return list((await connection.execute(select(REQUEST_LOGS.c.request_id))).scalars())


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def seed(db: Database, exchanges: list[Exchange], prices: dict[str, Any] | None = None,
               **config: Any) -> list[dict[str, Any]]:
    """Build rows for `exchanges` as the writer would (priced with `prices`, by model), and insert them."""
    table = None if prices is None else PriceTable({name: Price(**p) for name, p in prices.items()})
    builder = RecordBuilder(recorder_config(**config), table)
    rows = [builder.build(exchange) for exchange in exchanges]
    await db.insert_new(rows)
    return rows
