"""The request log of one gateway: database, background writer and retention, started and stopped together."""

from __future__ import annotations

from pathlib import Path

from sluice.exchange import Exchange
from sluice.pricing import PriceTable
from sluice.settings import Settings
from sluice.store.db import Database
from sluice.store.migrate import upgrade
from sluice.store.options import RequestLogConfig
from sluice.store.recorder import Recorder
from sluice.store.retention import Pruner
from sluice.store.spill import SpillFile
from sluice.store.urls import database_url
from sluice.telemetry.logs import effective_format
from sluice.telemetry.metrics import Metrics


def spill_path(config: RequestLogConfig, settings: Settings) -> Path:
    return Path(config.spill_path or f"{settings.data_dir.rstrip('/')}/request-log-spill.jsonl")


class RequestLog:
    """An Observer: `observe` only enqueues; everything else runs in background tasks."""

    def __init__(self, config: RequestLogConfig, settings: Settings, metrics: Metrics | None = None,
                 prices: PriceTable | None = None) -> None:
        self.config = config
        self.db = Database(database_url(config, settings), timeout=config.write_timeout_seconds) \
            if config.database else None
        registry = metrics.registry if metrics is not None else None
        self.recorder = Recorder(config, self.db, SpillFile(spill_path(config, settings)), registry, prices)
        self.recorder.console = effective_format(settings.log_format) == "console"
        if metrics is not None:
            metrics.before_render.append(self.recorder.refresh_metrics)
        self.pruner = None
        if self.db is not None and config.retention_days is not None:
            self.pruner = Pruner(self.db, config.retention_days, config.prune_interval_seconds,
                                 config.prune_batch_size)

    def observe(self, exchange: Exchange) -> None:
        self.recorder.observe(exchange)

    async def start(self) -> None:
        """Migrate (SQLite by default; other databases with `sluice db upgrade`), then start the tasks."""
        if self.db is not None:
            migrate = self.config.auto_migrate
            if migrate or (migrate is None and self.db.is_sqlite):
                await upgrade(self.db)
        await self.recorder.start()
        if self.pruner is not None:
            self.pruner.start()

    async def aclose(self) -> None:
        """Stop retention, flush the buffer (spilling what the database will not take), close the pool."""
        if self.pruner is not None:
            await self.pruner.aclose()
        await self.recorder.aclose()
        if self.db is not None:
            await self.db.aclose()
