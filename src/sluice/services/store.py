"""Instance changes made through the admin API (added, removed, drained, restored): kept in the database, applied
on top of sluice.yaml at start and picked up by every process within `refresh_seconds`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from sluice.db.engine import Database
from sluice.db.tables import SERVICE_INSTANCES
from sluice.services.changes import Change
from sluice.services.registry import ServiceRegistry
from sluice.tasks import stop

logger = logging.getLogger("sluice.services")

REFRESH_SECONDS = 2.0


class ServiceStore:
    """Writes changes to the database (or keeps them in memory without one) and applies them to the registry;
    `refresh` brings in what other processes changed."""

    def __init__(self, registry: ServiceRegistry, db: Database | None,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.registry = registry
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.changes: dict[tuple[str, str], Change] = {}
        self._lock = asyncio.Lock()
        """A refresh's read and a write are not interleaved (the read would undo the write until the next one)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Apply the stored changes now, then poll every `refresh_seconds` (a failed read is logged and retried)."""
        if self.db is None:
            return
        try:
            await self.refresh()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("services: reading the instance changes from the database failed: %s", exc)
        self._task = asyncio.create_task(self._refresh_forever(), name="sluice-service-changes")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def refresh(self) -> None:
        """Read every stored change and apply them all."""
        assert self.db is not None
        async with self._lock:
            async with self.db.connect() as connection:
                rows = (await connection.execute(select(SERVICE_INSTANCES))).mappings().all()
            self.changes = {(row["service"], row["url"]): Change(row["weight"], row["removed"], row["draining"])
                            for row in rows if row["service"] in self.registry.services}
            self.apply()

    async def put(self, service: str, url: str, change: Change) -> None:
        """Store `change` for (service, url) and apply it here at once (other processes on their next refresh)."""
        url = url.rstrip("/")
        async with self._lock:
            if self.db is not None:
                values = {"weight": change.weight, "removed": change.removed, "draining": change.draining,
                          "updated_at": datetime.now(UTC)}
                async with self.db.begin() as connection:
                    table = SERVICE_INSTANCES
                    updated = await connection.execute(table.update().where(
                        table.c.service == service, table.c.url == url).values(**values))
                    if not updated.rowcount:
                        await connection.execute(table.insert().values(service=service, url=url, **values))
            self.changes[service, url] = change
            self.apply()

    def current(self, service: str, url: str) -> Change:
        return self.changes.get((service, url.rstrip("/")), Change())

    def apply(self) -> None:
        """Each service's instances: the config's, then the added ones (by URL), less the removed ones."""
        for name, service in self.registry.services.items():
            configured = {instance.url.rstrip("/"): instance.weight for instance in service.config.instances}
            added = sorted(url for (owner, url), change in self.changes.items()
                           if owner == name and not change.removed and url not in configured)
            wanted = []
            for url in [*configured, *added]:
                change = self.changes.get((name, url), Change())
                if change.removed:
                    continue
                weight = change.weight if change.weight is not None else configured.get(url, 1.0)
                wanted.append((url, weight, change.draining))
            service.set_instances(wanted)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("services: refresh of the instance changes from the database failed: %s", exc)
