"""Retention: delete entries older than the configured days in small batches, periodically or on demand."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sluice.store.writers import RowWriter, WriteFailed

logger = logging.getLogger("sluice.request_log")


async def prune(db: RowWriter, older_than: datetime, *, batch_size: int = 5000, pause: float = 0.0) -> int:
    """Delete the entries stamped before `older_than`, `batch_size` rows per transaction; returns how many.

    Each batch is a short transaction that picks its rows through the timestamp index, so the table is never
    locked for long and writers interleave between batches.
    """
    deleted = 0
    while True:
        count = await db.delete_older(older_than, batch_size)
        deleted += count
        if count < batch_size:
            return deleted
        await asyncio.sleep(pause)


def cutoff(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


class Pruner:
    """Runs `prune` every `interval` seconds for as long as the gateway runs."""

    def __init__(self, db: RowWriter, days: float, interval: float, batch_size: int) -> None:
        self.db = db
        self.days = days
        self.interval = interval
        self.batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-retention")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await prune(self.db, cutoff(self.days), batch_size=self.batch_size, pause=0.05)
            except (WriteFailed, OSError) as exc:
                logger.warning("request log: retention run failed (%s); next try in %ss", exc, self.interval)
            else:
                if deleted:
                    logger.info("request log: deleted %d entries older than %s days", deleted, self.days)
            await asyncio.sleep(self.interval)
