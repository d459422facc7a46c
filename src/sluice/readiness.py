"""Whether this gateway can serve now (`GET /health/ready`): some model has a usable deployment, the database the
config needs answers, and Redis (SLUICE_REDIS_URL) answers when the limits fail closed without it; each dependency
is pinged at most once per `DATABASE_TTL_SECONDS`, whatever the probe rate, and its state is in the body."""

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
DependencyState = DatabaseState


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
class DependencyCheck:
    """The answer of the last ping of a dependency, reused for `DATABASE_TTL_SECONDS`; one ping at a time."""

    name: str
    ping: Callable[[], Awaitable[None]] | None
    """What answers when the dependency is up (raises otherwise); None when the config uses none."""
    state: DependencyState = "unused"
    error: str | None = None
    checked_at: float | None = None
    """`time.monotonic()` of the last ping's answer."""
    _ping: asyncio.Task[None] | None = None

    async def current(self) -> DependencyState:
        if self.ping is None:
            return "unused"
        if self.checked_at is None or time.monotonic() - self.checked_at >= DATABASE_TTL_SECONDS:
            if self._ping is None or self._ping.done():
                self._ping = asyncio.create_task(self._run())
            await asyncio.shield(self._ping)
        return self.state

    async def _run(self) -> None:
        assert self.ping is not None
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                await self.ping()
        except TimeoutError:
            self._set("down", f"no answer within {DATABASE_TIMEOUT_SECONDS:g} s")
        except Exception as exc:  # noqa: BLE001 - the driver's, SQLAlchemy's, redis-py's: all mean "down"
            self._set("down", f"{type(exc).__name__}: {exc}")
        else:
            self._set("up", None)
        self.checked_at = time.monotonic()

    def _set(self, state: DependencyState, error: str | None) -> None:
        if state != self.state:
            if state == "down":
                logger.warning("readiness: the %s is down: %s", self.name, error)
            elif self.state == "down":
                logger.info("readiness: the %s answers again", self.name)
        self.state, self.error = state, error


class Readiness:
    """What `/health/ready` and `/admin/health` report: the models that can serve, and the database."""

    def __init__(self, routes: RouteTable, request_log: RequestLog | None, keys: KeyRing,
                 redis_url: str | None = None, limits_fail_closed: bool = False) -> None:
        self.routes = routes
        self.database = DependencyCheck("database", _database_ping(request_log, keys))
        self._redis_ping = RedisPing(redis_url) if redis_url else None
        self.redis = DependencyCheck("Redis", self._redis_ping)
        self.limits_fail_closed = limits_fail_closed
        """`limits.on_backend_failure: closed`: without Redis every limited request is refused, so not ready."""

    async def aclose(self) -> None:
        if self._redis_ping is not None:
            await self._redis_ping.aclose()

    async def report(self) -> dict[str, Any]:
        """The body: `status` (ready or not_ready), `reasons` (empty when ready), `degraded` (what works less well
        but does not stop serving), how many models can serve, and each dependency's state; no names, no error
        text (it is answered without a key)."""
        total = len(self.routes.public)
        serving = sum(any(not refusing(endpoint) for endpoint in route.pool.endpoints) for route in self.routes.public)
        database, redis = await asyncio.gather(self.database.current(), self.redis.current())
        reasons, degraded = [], []
        if total and not serving:
            reasons.append("no model has a usable deployment (each one fails its health checks or has its "
                           "circuit breaker open)")
        if database == "down":
            reasons.append("the database this gateway needs (request log, managed keys) does not answer")
        if redis == "down":
            if self.limits_fail_closed:
                reasons.append("Redis does not answer and the limits fail closed (limits.on_backend_failure: "
                               "closed): limited requests are refused")
            else:
                degraded.append("Redis does not answer: limits are not enforced (they fail open), circuit "
                                "breakers and the response cache are this process's own")
        return {"status": "not_ready" if reasons else "ready", "reasons": reasons, "degraded": degraded,
                "models": {"total": total, "serving": serving},
                "database": database, "redis": redis}


def _database_ping(request_log: RequestLog | None, keys: KeyRing) -> Callable[[], Awaitable[None]] | None:
    """`SELECT 1` on the request log's database if it has one, else on the managed key store's (opened on the
    first ping, as the first managed key would open it); None when the config uses no database."""
    opener = _database_opener(request_log, keys)
    if opener is None:
        return None

    async def select_one() -> None:
        db = await opener()
        async with db.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    return select_one


def _database_opener(request_log: RequestLog | None, keys: KeyRing) -> Callable[[], Awaitable[Database]] | None:
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


class RedisPing:
    """PING on a client of its own (made on the first ping, one connection at most; closed with the gateway)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None

    async def __call__(self) -> None:
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis.from_url(self.url, socket_timeout=DATABASE_TIMEOUT_SECONDS,
                                          socket_connect_timeout=DATABASE_TIMEOUT_SECONDS, max_connections=1)
        await self._client.ping()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
