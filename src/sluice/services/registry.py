"""The services of the config as pools of instances (the same `Pool` and `Endpoint` models use), each with a
pooled raw HTTP client, and the route table that sends requests to them."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from pyreqwest.client import Client
from pyreqwest.exceptions import RequestError

from sluice.errors import GatewayError
from sluice.providers.upstream import OpenStream, pooled_client, transport_error
from sluice.routing.balance import balancer
from sluice.routing.breaker import CircuitBreaker
from sluice.routing.endpoint import Endpoint
from sluice.routing.guard import UpstreamGuard
from sluice.routing.pool import Pool
from sluice.services import h1
from sluice.services.options import ServiceConfig
from sluice.services.rules import RuleTable
from sluice.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.gateway import Gateway
    from sluice.services.cache import ServiceCache
    from sluice.services.store import ServiceStore

MAX_CONNECTIONS = 1024


def instance_id(url: str) -> str:
    """An instance's id in the admin API: the same for its URL in every process and after a restart."""
    return hashlib.blake2b(url.rstrip("/").encode(), digest_size=4).hexdigest()


class Service:
    """One service: its instances (a pool), the client that reaches them, and what its strategy hashes on."""

    def __init__(self, name: str, config: ServiceConfig, metrics: Metrics) -> None:
        self.name = name
        self.config = config
        self._metrics = metrics
        self.pool = Pool([self._endpoint(instance.url, instance.weight) for instance in config.instances],
                         balancer(config.strategy))
        hash_on = config.hash_on
        self.hash_header = hash_on.header.lower().encode("latin-1") if hash_on and hash_on.header else None
        self.hash_cookie = hash_on.cookie.encode("latin-1") + b"=" if hash_on and hash_on.cookie else None
        self._client: Client | None = None
        self._h1: h1.H1Client | None = None

    def _endpoint(self, url: str, weight: float) -> Endpoint:
        url = url.rstrip("/")
        config = self.config
        breaker = CircuitBreaker(self.name, config.breaker, self._metrics, deployment=f"{self.name}/{url}") \
            if config.breaker.enabled else None
        guard = UpstreamGuard(None, breaker, None, self._metrics, name=self.name)
        return Endpoint(self.name, url, weight, guard, kind="instance")

    def instance(self, id_: str) -> Endpoint | None:
        """The instance with admin id `id_` (`instance_id`), if the pool has it."""
        return next((endpoint for endpoint in self.pool.endpoints if instance_id(endpoint.target) == id_), None)

    def set_instances(self, wanted: Sequence[tuple[str, float, bool]]) -> None:
        """Serve from exactly these (url, weight, draining) instances, in this order: known ones keep their
        breaker, load and health; new ones start healthy; removed ones finish their calls in flight."""
        known = {endpoint.target: endpoint for endpoint in self.pool.endpoints}
        endpoints = []
        for url, weight, draining in wanted:
            endpoint = known.get(url.rstrip("/")) or self._endpoint(url, weight)
            endpoint.weight, endpoint.draining = weight, draining
            endpoints.append(endpoint)
        if [e.target for e in endpoints] != [e.target for e in self.pool.endpoints]:
            self.pool.replace(endpoints)

    def affinity(self, headers: Mapping[bytes, bytes]) -> bytes | None:
        """The value `consistent_hash` keeps a caller on one instance by (None for the other strategies)."""
        if self.hash_header is not None:
            return headers.get(self.hash_header)
        if self.hash_cookie is not None:
            for part in headers.get(b"cookie", b"").split(b";"):
                part = part.strip()
                if part.startswith(self.hash_cookie):
                    return part[len(self.hash_cookie):]
        return None

    async def start(self) -> None:
        timeout = self.config.timeout
        self._client = pooled_client(MAX_CONNECTIONS, timeout.connect, timeout.read, raw=True,
                                     total_seconds=timeout.total)
        if h1.usable():
            self._h1 = h1.H1Client(MAX_CONNECTIONS, timeout.connect, timeout.read, timeout.total)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.close()
            self._h1 = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes],
             read_seconds: float | None = None) -> Awaitable[OpenStream]:
        """The reply once its headers arrived (its body is read by the caller); `body` is sent as it is read
        when it is an iterator; `read_seconds` bounds the whole call (a route's `timeout_seconds`). Not a coroutine
        of its own, so the lean client's call is one frame less at each of its resumptions."""
        if self._client is None:
            raise GatewayError(f"Service {self.name!r} is not started.")
        if self._h1 is not None and isinstance(body, bytes) and url.startswith("http://"):
            # the lean client (services/h1.py says why): plain http with the body in hand
            return self._h1.send(method, url, headers, body, read_seconds, self.name)
        return self._send(method, url, headers, body, read_seconds)

    async def _send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes],
                    read_seconds: float | None) -> OpenStream:
        assert self._client is not None
        builder = self._client.request(method, url).headers(headers)
        if isinstance(body, bytes):
            if body:
                builder = builder.body_bytes(body)
        else:
            builder = builder.body_stream(body)
        if read_seconds is not None:  # the route's own timeout, for the whole call
            builder = builder.timeout(timedelta(seconds=read_seconds))
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        try:
            return OpenStream(request, await request.__aenter__())
        except RequestError as exc:
            raise transport_error(exc, self.name) from exc


class ServiceRegistry:
    """Every service by name, and the rules (`services/rules.py`) that pick one for a request."""

    def __init__(self, services: Mapping[str, ServiceConfig], rules: RuleTable, metrics: Metrics) -> None:
        self.services = {name: Service(name, config, metrics) for name, config in services.items()}
        self.rules = rules
        self.store: ServiceStore | None = None
        """The admin API's instance changes (services/store.py); set by `watch`."""
        self._cache: ServiceCache | None = None

    def response_cache(self, gateway: Gateway) -> ServiceCache:
        """The cache of the routes with `cache:` (services/cache.py), made at its first use: in Redis when
        SLUICE_REDIS_URL is set (under `limits.redis_prefix`, with `limits.redis_timeout_seconds`), else in memory."""
        if self._cache is None:
            from sluice.services.cache import build_service_cache

            limits = gateway.config.limits
            routes = {str(rule.index): rule.config.cache for rule in self.rules.rules if rule.config.cache}
            self._cache = build_service_cache(routes, gateway.settings.redis_url, limits.redis_prefix,
                                              limits.redis_timeout_seconds, gateway.metrics)
        return self._cache

    def endpoints(self) -> list[tuple[str, Endpoint]]:
        """Every (service, instance) pair."""
        return [(name, endpoint) for name, service in self.services.items() for endpoint in service.pool.endpoints]

    async def start(self) -> None:
        for service in self.services.values():
            await service.start()

    async def watch(self, db: Database | None) -> None:
        """Apply the admin API's stored instance changes, and poll for other processes' (in memory without `db`).
        Called once the database is migrated."""
        from sluice.services.store import ServiceStore

        self.store = ServiceStore(self, db)
        await self.store.start()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
        if self._cache is not None:
            await self._cache.aclose()
        for service in self.services.values():
            await service.aclose()
