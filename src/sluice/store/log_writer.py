"""The request log's writing end: the batched `Recorder` and retention, run together (no SQLAlchemy: the writer
process runs this)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from sluice.exchange import Exchange
from sluice.pricing import PriceTable
from sluice.store.options import RequestLogConfig
from sluice.store.recorder import Recorder
from sluice.store.retention import Pruner
from sluice.store.spill import SpillFile
from sluice.store.writers import RowWriter


class LogWriter:
    """Runs in the gateway process (`request_log.writer: inline`) or in the writer process (`store/log_worker.py`)."""

    def __init__(self, config: RequestLogConfig, db: RowWriter | None, spill_path: Path, *, console: bool = False,
                 registry: CollectorRegistry | None = None, prices: PriceTable | None = None) -> None:
        self.config = config
        self.db = db
        self.recorder = Recorder(config, db, SpillFile(spill_path), registry, prices)
        self.recorder.console = console
        self.pruner = None
        if db is not None and config.retention_days is not None:
            self.pruner = Pruner(db, config.retention_days, config.prune_interval_seconds, config.prune_batch_size)

    def observe(self, exchange: Exchange) -> None:
        self.recorder.observe(exchange)

    def refresh_metrics(self) -> None:
        self.recorder.refresh_metrics()

    async def start(self) -> None:
        """Start the tasks (the gateway ran `migrate_at_start` before)."""
        await self.recorder.start()
        if self.pruner is not None:
            self.pruner.start()

    async def aclose(self) -> None:
        """Stop retention, then flush the buffer (spilling what the database will not take)."""
        if self.pruner is not None:
            await self.pruner.aclose()
        await self.recorder.aclose()
