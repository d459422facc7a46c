"""Whether this gateway can serve now (`GET /health/ready`): some model has a usable deployment, and the database the
config needs answers; the database is pinged at most once per `DATABASE_TTL_SECONDS`, whatever the probe rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sluice.errors import ServiceUnavailable
from sluice.routing.breaker import OPEN
from sluice.routing.endpoint import Endpoint
from sluice.routing.table import RouteTable

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.keys.ring import KeyRing
    from sluice.store.request_log import RequestLog

logger = logging.getLogger("sluice.health")

DATABASE_TTL_SECONDS = 5.0
"""How long a database ping's answer is reused."""
DATABASE_TIMEOUT_SECONDS = 2.0
"""A ping that takes longer counts as the database being down."""

DatabaseState = Literal["up", "down", "unused"]


class NotReady(ServiceUnavailable):
    """503 with the readiness body (not an OpenAI-shaped error: load balancers and people read it)."""

    code = "not_ready"

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("; ".join(body["reasons"]))
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return self.body


def refusing(endpoint: Endpoint) -> bool:
    """Whether the endpoint can take no call now: out by its health checks, or its breaker open."""
    if not endpoint.healthy:
        return True
    breaker = endpoint.guard.breaker
    return breaker is not None and breaker.state == OPEN and time.monotonic() < breaker.retry_at


@dataclass(slots=True)
class DatabaseCheck:
    """The answer of the last ping of the database, reused for `DATABASE_TTL_SECONDS`; one ping at a time."""

    open: Callable[[], Awaitable[Database]] | None
    """The database to ping (opened if need be); None when the config needs none."""
    state: DatabaseState = "unused"
    error: str | None = None
    checked_at: float | None = None
    """`time.monotonic()` of the last ping's answer."""
    _ping: asyncio.Task[None] | None = None

    async def current(self) -> DatabaseState:
        if self.open is None:
            return "unused"
        if self.checked_at is None or time.monotonic() - self.checked_at >= DATABASE_TTL_SECONDS:
            if self._ping is None or self._ping.done():
                self._ping = asyncio.create_task(self._run())
            await asyncio.shield(self._ping)
        return self.state

    async def _run(self) -> None:
        assert self.open is not None
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                db = await self.open()
                async with db.connect() as connection:
                    await connection.exec_driver_sql("SELECT 1")
        except TimeoutError:
            self._set("down", f"no answer within {DATABASE_TIMEOUT_SECONDS:g} s")
        except Exception as exc:  # noqa: BLE001 - the driver's, SQLAlchemy's or the key store's: all mean "down"
            self._set("down", f"{type(exc).__name__}: {exc}")
        else:
            self._set("up", None)
        self.checked_at = time.monotonic()

    def _set(self, state: DatabaseState, error: str | None) -> None:
        if state != self.state:
            if state == "down":
                logger.warning("readiness: the database is down: %s", error)
            elif self.state == "down":
                logger.info("readiness: the database answers again")
        self.state, self.error = state, error


class Readiness:
    """What `/health/ready` and `/admin/health` report: the models that can serve, and the database."""

    def __init__(self, routes: RouteTable, request_log: RequestLog | None, keys: KeyRing) -> None:
        self.routes = routes
        self.database = DatabaseCheck(_database_opener(request_log, keys))

    async def report(self) -> dict[str, Any]:
        """The body: `status` (ready or not_ready), `reasons` (empty when ready), how many models can serve, and
        the database's state; no names, no error text (it is answered without a key)."""
        total = len(self.routes.public)
        serving = sum(any(not refusing(endpoint) for endpoint in route.pool.endpoints) for route in self.routes.public)
        database = await self.database.current()
        reasons = []
        if total and not serving:
            reasons.append("no model has a usable deployment (each one fails its health checks or has its "
                           "circuit breaker open)")
        if database == "down":
            reasons.append("the database this gateway needs (request log, managed keys) does not answer")
        return {"status": "not_ready" if reasons else "ready", "reasons": reasons,
                "models": {"total": total, "serving": serving},
                "database": database}


def _database_opener(request_log: RequestLog | None, keys: KeyRing) -> Callable[[], Awaitable[Database]] | None:
    """The request log's database if it has one, else the managed key store's (opened on the first ping, as the
    first managed key would open it); None when the config uses no database."""
    if request_log is not None and request_log.db is not None:
        db = request_log.db

        async def request_log_db() -> Database:
            return db

        return request_log_db
    managed = keys.managed
    if managed is None:
        return None

    async def key_store_db() -> Database:
        return (await managed.store()).db

    return key_store_db
