"""The request log of one gateway: its database and its writer (a separate process, or inline), run together."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sluice.db.engine import Database
from sluice.db.urls import database_url
from sluice.exchange import Exchange
from sluice.pricing import PriceTable
from sluice.settings import Settings
from sluice.store.options import RequestLogConfig
from sluice.telemetry.logs import effective_format
from sluice.telemetry.metrics import Metrics


def spill_path(config: RequestLogConfig, settings: Settings) -> Path:
    return Path(config.spill_path or f"{settings.data_dir.rstrip('/')}/request-log-spill.jsonl")


class Writer(Protocol):
    """What turns exchanges into rows: `LogWriter` in this process, or `LogSender` to the writer process."""

    def observe(self, exchange: Exchange) -> None: ...

    def refresh_metrics(self) -> None: ...

    async def start(self) -> None:
        """Start writing; the migrations already ran."""

    async def aclose(self) -> None: ...


class RequestLog:
    """An Observer: `observe` only enqueues; the writer does the rest, off the request path.

    `db` is the gateway's own connection pool to the same database, for the admin queries, budgets and prompts.
    """

    def __init__(self, config: RequestLogConfig, settings: Settings, metrics: Metrics | None = None,
                 prices: PriceTable | None = None) -> None:
        self.config = config
        url = database_url(config, settings)
        self.db = Database(url, timeout=config.write_timeout_seconds) if config.database else None
        registry = metrics.registry if metrics is not None else None
        console = effective_format(settings.log_format) == "console"
        self.writer: Writer
        if config.writer == "process":
            from sluice.store.log_sender import LogSender, worker_settings

            self.writer = LogSender(config, worker_settings(config, url, spill_path(config, settings), console,
                                                            prices, settings.log_format), registry, prices)
        else:
            from sluice.store.log_writer import LogWriter

            self.writer = LogWriter(config, self.db, spill_path(config, settings), console=console,
                                    registry=registry, prices=prices)
        if metrics is not None:
            metrics.before_render.append(self.writer.refresh_metrics)

    def observe(self, exchange: Exchange) -> None:
        self.writer.observe(exchange)

    async def start(self) -> None:
        """Migrate in this process (so start-up fails here if the database is unusable), then start the writer."""
        from sluice.db.migrate import migrate_at_start

        await migrate_at_start(self.config, self.db)
        await self.writer.start()

    async def aclose(self) -> None:
        """Flush the writer (what the database will not take is spilled to disk), then close the pool."""
        await self.writer.aclose()
        if self.db is not None:
            await self.db.aclose()
