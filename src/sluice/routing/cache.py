"""The response cache: a model's complete answers to identical requests, opt-in per model (`cache:`), kept in this
process's memory or in Redis (`routing/cache_redis.py`), with identical requests in flight sharing one upstream call.

A request's key is a BLAKE2b hash of its operation, its scope (the caller's key id, or every key when the model
says `shared: true`) and its body as canonical JSON (keys sorted at every level) without the fields that do not
change the answer (`IGNORED`). The body's `model` is the name the caller used (an alias has entries of its own);
a prompt template is already rendered into its messages. See docs/caching.md.

In front of that key, each process remembers which entry a caller's exact request bytes found (`recall`): a repeat
of the same bytes from the same key finds its answer before the body is parsed, validated or normalised, which
would cost a hit more than the lookup itself.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from hashlib import blake2b
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from sluice.config import CacheConfig, SluiceConfig
from sluice.errors import GatewayError

if TYPE_CHECKING:
    from prometheus_client import Counter

    from sluice.exchange import Exchange
    from sluice.providers.base import UpstreamRequest
    from sluice.telemetry.metrics import Metrics

HIT, MISS, BYPASS = "HIT", "MISS", "BYPASS"
IGNORED = frozenset(("stream", "stream_options", "user"))
"""Request fields that never change the answer: the framing (what is cached is always the complete answer) and
`user`, the end user's id that OpenAI keeps for abuse monitoring."""
MAX_ENTRY_BYTES = 4 << 20
"""A larger answer is not stored: one answer must not evict thousands."""
MEMORY_MAX_BYTES = 64 << 20
MEMORY_MAX_ENTRIES = 10_000
"""The in-memory store's bounds per process: the least recently used entries go first beyond either."""
RECALLED_MAX = 20_000
"""Request bytes remembered per process (each ~0.2 KB: a digest and the entry's key), the oldest forgotten first."""


class Entry(NamedTuple):
    """A stored answer and its age in seconds."""

    age: float
    body: bytes


class Store(Protocol):
    """Where entries live. A store never raises: a failure is a miss (`get`) or a lost entry (`put`)."""

    async def get(self, key: bytes) -> Entry | None: ...

    def put(self, key: bytes, body: bytes, ttl: float) -> None:
        """Keep `body` for `ttl` seconds; returns at once."""

    async def aclose(self) -> None: ...


class MemoryStore:
    """This process's entries, least recently used evicted first beyond `max_entries` or `max_bytes`."""

    def __init__(self, max_entries: int = MEMORY_MAX_ENTRIES, max_bytes: int = MEMORY_MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[bytes, tuple[float, float, bytes]] = OrderedDict()
        """key → (stored at, expires at, body), monotonic seconds, least recently used first."""
        self.size = 0
        """Bytes of the bodies held."""

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: bytes) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        stored, expires, body = found
        now = monotonic()
        if now >= expires:
            del self._entries[key]
            self.size -= len(body)
            return None
        self._entries.move_to_end(key)
        return Entry(now - stored, body)

    def put(self, key: bytes, body: bytes, ttl: float) -> None:
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.size -= len(old[2])
        now = monotonic()
        entries[key] = (now, now + ttl, body)
        self.size += len(body)
        while len(entries) > self.max_entries or self.size > self.max_bytes:
            self.size -= len(entries.popitem(last=False)[1][2])

    async def aclose(self) -> None:
        self._entries.clear()
        self.size = 0


def cache_control(header: bytes | None) -> tuple[bool, bool, int | None]:
    """(look up, store, max age in seconds) as a request's `Cache-Control` asks: `no-store` neither reads nor
    writes, `no-cache` skips the lookup but stores the fresh answer, `max-age=N` accepts an entry at most N seconds
    old. Unknown directives and a malformed max-age are ignored."""
    if not header:
        return True, True, None
    lookup = store = True
    max_age = None
    for directive in header.decode("latin-1").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name == "no-store":
            lookup = store = False
        elif name == "no-cache":
            lookup = False
        elif name == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():
                max_age = int(value)
    return lookup, store, max_age


def bytes_key(operation: str, key_id: str, raw: bytes) -> tuple[str, str, bytes]:
    """Who sent these exact request bytes to which operation (a BLAKE2b digest of the bytes, 128 bits)."""
    return operation, key_id, blake2b(raw, digest_size=16).digest()


def cache_key(operation: str, body: Mapping[str, Any], scope: str) -> bytes:
    """The entry's key (32 hex digits): what the answer depends on, and who may read it (`scope`)."""
    kept = {name: value for name, value in body.items() if name not in IGNORED}
    digest = blake2b(f"{operation}\0{scope}\0".encode(), digest_size=16)
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest().encode()


class ResponseCache:
    """The cache of the models that have one (`policies`: by public name and alias), over one store, with the
    calls in flight that identical requests wait for (single flight, per process), and the request bytes each
    caller's entries were found or stored under (`recall`)."""

    def __init__(self, policies: Mapping[str, CacheConfig], store: Store, metrics: Metrics) -> None:
        self.policies = policies
        self.store = store
        self._flights: dict[bytes, asyncio.Future[bytes]] = {}
        self._recalled: dict[tuple[str, str, bytes], tuple[bytes, str]] = {}
        """(operation, key id, digest of the request bytes) → (the entry's key, the model asked), oldest first."""
        counter: Counter = metrics.cache_requests
        self._counts = {model: {result: counter.labels(model, result.lower()) for result in (HIT, MISS, BYPASS)}
                        for model in policies}

    async def recall(self, operation: str, key_id: str, raw: bytes, control: bytes | None
                     ) -> tuple[str, bytes] | None:
        """(the model asked, the stored answer) when this key sent these very bytes before and the entry they found
        is still held and fresh enough for `control`; None otherwise (the request then goes through `answer`).
        Nothing is counted: the caller says `hit` once the request is admitted."""
        max_age = None
        if control:
            lookup, _, max_age = cache_control(control)
            if not lookup:
                return None
        recalled = self._recalled
        if not recalled:
            return None
        raw_key = bytes_key(operation, key_id, raw)
        found = recalled.get(raw_key)
        if found is None:
            return None
        key, model = found
        entry = await self.store.get(key)
        if entry is None:
            recalled.pop(raw_key, None)  # expired or evicted: `answer` remembers the next entry
            return None
        if max_age is not None and entry.age > max_age:
            return None
        return model, entry.body

    def hit(self, exchange: Exchange, model: str, body: bytes) -> bytes:
        """Count an answer `recall` found for `model` as a hit of the request's."""
        return _hit(exchange, self._counts[model], body)

    def _remember(self, raw_key: tuple[str, str, bytes], key: bytes, model: str) -> None:
        recalled = self._recalled
        recalled.pop(raw_key, None)
        recalled[raw_key] = (key, model)
        if len(recalled) > RECALLED_MAX:
            del recalled[next(iter(recalled))]

    async def answer(self, request: UpstreamRequest, exchange: Exchange, key_id: str, control: bytes | None,
                     fetch: Callable[[], Awaitable[bytes]]) -> bytes:
        """The complete answer to `request` from the cache, from an identical call in flight, or from `fetch`
        (the upstream call, whose answer is stored); `exchange.cache` says which (HIT, MISS, BYPASS). When
        the request's bytes are still the caller's (`request.raw` is `exchange.request_body`), the entry they
        found or filled is remembered for `recall`."""
        model = request.body["model"]
        policy = self.policies.get(model)
        if policy is None:
            exchange.cache = BYPASS
            return await fetch()
        counts = self._counts[model]
        lookup, store, max_age = cache_control(control)
        if not store:
            exchange.cache = BYPASS
            counts[BYPASS].inc()
            return await fetch()
        key = cache_key(request.operation, request.body, "shared" if policy.shared else "key:" + key_id)
        raw = request.raw
        raw_key = (bytes_key(request.operation, key_id, raw)
                   if raw is not None and raw is exchange.request_body and not request.stream else None)
        flights = self._flights
        if lookup:
            flight = flights.get(key)
            if flight is None:
                entry = await self.store.get(key)
                if entry is not None and (max_age is None or entry.age <= max_age):
                    if raw_key is not None:
                        self._remember(raw_key, key, model)
                    return _hit(exchange, counts, entry.body)
                flight = flights.get(key)  # one may have started while the store answered
            exchange.cache = MISS
            while flight is not None:
                try:
                    reply = await asyncio.shield(flight)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not flight.cancelled() or (task is not None and task.cancelling()):
                        raise  # this request was cancelled, not the call it waited for
                    flight = flights.get(key)  # that call's caller went away: wait for the next, or make it
                    continue
                return _hit(exchange, counts, reply)
        exchange.cache = MISS if lookup else BYPASS
        counts[exchange.cache].inc()
        future: asyncio.Future[bytes] | None = None
        if key not in flights:
            future = flights[key] = asyncio.get_running_loop().create_future()
        try:
            reply = await fetch()
        except BaseException as exc:
            if future is not None:
                del flights[key]
                if isinstance(exc, GatewayError):
                    future.set_exception(exc)  # the same error for whoever waited: they asked the same thing
                    future.exception()  # retrieved: no "never retrieved" warning when nobody waited
                else:
                    future.cancel()  # this caller went away: a waiter makes the call instead
            raise
        if len(reply) <= MAX_ENTRY_BYTES:
            self.store.put(key, reply, policy.ttl_seconds)
            if raw_key is not None:
                self._remember(raw_key, key, model)
        if future is not None:
            del flights[key]
            future.set_result(reply)
        return reply

    async def aclose(self) -> None:
        await self.store.aclose()


def _hit(exchange: Exchange, counts: Mapping[str, Counter], body: bytes) -> bytes:
    """An answer no upstream call of this request's made: no upstream time, nothing charged (no provider)."""
    exchange.cache = HIT
    exchange.latency_upstream = 0.0
    counts[HIT].inc()
    return body


def build_cache(config: SluiceConfig, redis_url: str | None, metrics: Metrics) -> ResponseCache | None:
    """The cache of the models with `cache:`, in Redis when `SLUICE_REDIS_URL` is set (under `limits.redis_prefix`,
    with `limits.redis_timeout_seconds`), else in this process's memory; None when no model has one."""
    policies = {name: model.cache for model in config.models if model.cache is not None
                for name in (model.name, *model.aliases)}
    if not policies:
        return None
    store: Store
    if redis_url:
        from sluice.routing.cache_redis import RedisStore  # redis-py adds ~22 MB resident: only when used

        limits = config.limits
        store = RedisStore(redis_url, limits.redis_prefix, limits.redis_timeout_seconds, metrics.cache_failures)
    else:
        store = MemoryStore()
    return ResponseCache(policies, store, metrics)
