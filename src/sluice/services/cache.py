"""The service routes' response cache: a shared HTTP cache (RFC 9111) of GET and HEAD replies, opt-in per route
(`cache:`), in this process's memory (one LRU per route, bounded by entries and bytes) or in Redis when
SLUICE_REDIS_URL is set (the LLM cache's `RedisStore`: its timeouts, cool-down and failure counter; a failure is a
miss). See docs/services.md, "Caching".

The decisions are written here, not taken from hishel: hishel 2.0's sans-IO spec (`IdleClient.next`) wants its own
`Request`/`Headers`/`Entry` objects built for every request and measured ~23 µs per fresh hit here (the whole
lookup below is a few µs); it is a client's cache (it does not answer a caller's own conditional request with a
304) and it pulls in msgpack for its storages. Freshness follows §4.2.1 (s-maxage, then max-age, then
Expires - Date, then the route's `default_ttl_seconds`; no heuristics), storage §3 and §3.5, Vary §4.1 (a second
lookup keyed by the varying request headers' values), validation §4.3.

An entry is `b"E"`, the length of a JSON head (4 bytes), the head (status, headers, the Age the service gave,
whether it must be revalidated) then the body. Under a Vary the primary key holds `b"V"` + the header names.
"""

from __future__ import annotations

import calendar
import struct
from email.utils import parsedate_tz
from hashlib import blake2b
from time import time
from typing import TYPE_CHECKING, NamedTuple

import orjson

from sluice.routing.cache import MemoryStore, Store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sluice.services.options import RouteCache
    from sluice.telemetry.metrics import Metrics

HIT, MISS, REVALIDATED = "HIT", "MISS", "REVALIDATED"
MAX_BODY = 1 << 20
"""A reply whose declared length is larger is never stored (nor read whole to be)."""
KEEP_STALE_SECONDS = 600.0
"""How long an entry with a validator is kept after it went stale, to be revalidated instead of fetched again."""
STORABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
_NOT_MODIFIED_HEADERS = frozenset({b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary",
                                   b"last-modified"})
"""What a 304 the gateway answers carries of the entry (RFC 9110 §15.4.5)."""
_LENGTH = struct.Struct("<I")


class Stored(NamedTuple):
    """An entry as found: the reply, how old it is (the service's Age included) and how long it is fresh."""

    key: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    age: float
    lifetime: float
    revalidate: bool
    """`no-cache` from the service: fresh or not, the service is asked first."""

    @property
    def fresh(self) -> bool:
        return not self.revalidate and self.age < self.lifetime

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    def served_headers(self, *, not_modified: bool = False) -> list[tuple[bytes, bytes]]:
        """The entry's headers as a hit answers them: its Age (whole seconds), only the 304 ones for a 304."""
        kept = [(name, value) for name, value in self.headers
                if name != b"age" and (not not_modified or name in _NOT_MODIFIED_HEADERS)]
        return [*kept, (b"age", str(int(self.age)).encode())]


def directives(value: bytes | str | None) -> dict[str, str]:
    """A `Cache-Control` value as {directive: argument} (lower-case names, '' when none)."""
    if not value:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    out: dict[str, str] = {}
    for part in text.lower().split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            out[name] = argument.strip().strip('"')
    return out


def _seconds(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def http_date(value: str | bytes | None) -> float | None:
    """An HTTP date as epoch seconds (None when absent or malformed: an invalid Expires means already stale)."""
    if not value:
        return None
    parsed = parsedate_tz(value.decode("latin-1") if isinstance(value, bytes) else value)
    if parsed is None:
        return None
    return calendar.timegm(parsed[:9]) - (parsed[9] or 0)


def lifetime(control: Mapping[str, str], headers: Mapping[str, str], default: float) -> float:
    """How long a reply is fresh, as a shared cache counts it (§4.2.1): s-maxage, max-age, Expires - Date, or the
    route's default."""
    for name in ("s-maxage", "max-age"):
        if name in control:
            return float(_seconds(control[name]) or 0)
    if "expires" in headers:
        expires = http_date(headers["expires"])
        if expires is None:
            return 0.0
        date = http_date(headers.get("date")) or time()
        return max(0.0, expires - date)
    return default


def primary_key(service: str, method: str, path: str) -> bytes:
    """The key of what was asked: the service, the method, the upstream path and query."""
    return blake2b(f"{service}\0{method}\0{path}".encode(), digest_size=16).hexdigest().encode()


def _variant_key(primary: bytes, names: Sequence[str], headers: Sequence[tuple[str, str]]) -> bytes:
    digest = blake2b(primary, digest_size=16)
    for name in names:
        values = ",".join(" ".join(value.split()) for key, value in headers if key.lower() == name)
        digest.update(f"\0{name}\0{values}".encode("latin-1", "replace"))
    return digest.hexdigest().encode()


def etag_matches(condition: bytes, etag: bytes | None) -> bool:
    """A caller's If-None-Match against an entry's ETag (weak comparison, RFC 9110 §13.1.2)."""
    if etag is None:
        return False
    if condition.strip() == b"*":
        return True
    wanted = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == wanted for tag in condition.split(b","))


def not_modified_for(caller: Mapping[bytes, bytes], entry: Stored) -> bool:
    """Whether the caller's own conditional headers are satisfied by the entry (it gets a 304)."""
    condition = caller.get(b"if-none-match")
    if condition is not None:
        return etag_matches(condition, entry.header(b"etag"))
    since = http_date(caller.get(b"if-modified-since"))
    modified = http_date(entry.header(b"last-modified"))
    return since is not None and modified is not None and modified <= since


class ServiceCache:
    """The entries of every cached route, in one store per route (memory) or one shared store (Redis)."""

    def __init__(self, stores: Mapping[str, Store], shared: Store | None, metrics: Metrics) -> None:
        self._stores = stores
        self._shared = shared
        self._counts = metrics.cache_requests

    def _store(self, route: str) -> Store:
        return self._shared if self._shared is not None else self._stores[route]

    def count(self, route: str, result: str) -> None:
        self._counts.labels(f"route:{route}", result.lower()).inc()

    async def lookup(self, route: str, key: bytes, upstream: Sequence[tuple[str, str]]) -> Stored | None:
        """The entry for this request (its Vary variant), fresh or stale; None when there is none."""
        store = self._store(route)
        found = await store.get(key)
        if found is None:
            return None
        raw = found.body
        if raw[:1] == b"V":
            key = _variant_key(key, orjson.loads(raw[1:]), upstream)
            found = await store.get(key)
            if found is None or found.body[:1] != b"E":
                return None
            raw = found.body
        if raw[:1] != b"E":
            return None
        size = _LENGTH.unpack_from(raw, 1)[0]
        head = orjson.loads(raw[5:5 + size])
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in head["h"]]
        return Stored(key, head["s"], headers, raw[5 + size:], found.age + head["a"], head["l"], head["r"])

    def storable(self, status: int, headers: Sequence[tuple[bytes, bytes]], upstream: Sequence[tuple[str, str]],
                 policy: RouteCache) -> tuple[dict[str, str], float, bool] | None:
        """(the reply's headers by name, its freshness lifetime, must revalidate) when it may be stored (§3,
        §3.5 as a shared cache), else None."""
        if status not in STORABLE_STATUSES:
            return None
        named = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        control = directives(named.get("cache-control"))
        if "no-store" in control or "private" in control or named.get("vary", "").strip() == "*":
            return None
        explicit = "public" in control or "s-maxage" in control
        if not explicit and "set-cookie" in named:
            return None  # a session's reply: shared only when the service says so
        if not explicit and "must-revalidate" not in control and any(
                name.lower() == "authorization" for name, _ in upstream):
            return None  # §3.5: a reply to an authorized request
        length = named.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            return None
        fresh_for = lifetime(control, named, policy.default_ttl_seconds)
        revalidate = "no-cache" in control
        validated = "etag" in named or "last-modified" in named
        if (fresh_for <= 0 or revalidate) and not validated:
            return None
        return named, fresh_for, revalidate

    def store(self, route: str, key: bytes, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes,
              upstream: Sequence[tuple[str, str]], fresh_for: float, revalidate: bool, named: Mapping[str, str]
              ) -> None:
        """Keep a reply (returns at once); under a Vary, the primary key names the varying headers."""
        store = self._store(route)
        age = _seconds(named.get("age")) or 0
        packed = self._pack(status, [(name, value) for name, value in headers if name != b"set-cookie"],
                            fresh_for, revalidate, age)  # a Set-Cookie is never replayed to another caller
        keep = max(0.0, fresh_for - age) + (KEEP_STALE_SECONDS if "etag" in named or "last-modified" in named
                                             else 0.0)
        if keep <= 0:
            return
        vary = sorted({name.strip().lower() for name in named.get("vary", "").split(",") if name.strip()})
        if vary:
            store.put(key, b"V" + orjson.dumps(vary), keep)
            key = _variant_key(key, vary, upstream)
        store.put(key, b"E" + packed + body, keep)

    def refreshed(self, route: str, entry: Stored, headers: Sequence[tuple[bytes, bytes]],
                  upstream: Sequence[tuple[str, str]], policy: RouteCache) -> Stored:
        """The entry after the service's 304 (§4.3.4): its headers updated by the 304's, stored again, age 0."""
        fresh = dict(headers)
        merged = [(name, fresh.pop(name, value)) for name, value in entry.headers if name != b"age"]
        merged += [(name, value) for name, value in fresh.items()
                   if name in _NOT_MODIFIED_HEADERS or name.startswith(b"x-")]
        verdict = self.storable(entry.status, merged, upstream, policy)
        if verdict is None:
            return entry._replace(headers=merged, age=0.0)
        named, fresh_for, revalidate = verdict
        self._store(route).put(entry.key, b"E" + self._pack(entry.status, merged, fresh_for, revalidate, 0)
                               + entry.body, fresh_for + KEEP_STALE_SECONDS)
        return entry._replace(headers=merged, age=0.0, lifetime=fresh_for, revalidate=revalidate)

    @staticmethod
    def _pack(status: int, headers: Sequence[tuple[bytes, bytes]], fresh_for: float, revalidate: bool, age: int
              ) -> bytes:
        kept = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers if name != b"age"]
        head = orjson.dumps({"s": status, "h": kept, "a": age, "l": fresh_for, "r": revalidate})
        return _LENGTH.pack(len(head)) + head

    async def aclose(self) -> None:
        for store in (self._shared, *self._stores.values()):
            if store is not None:
                await store.aclose()


def build_service_cache(routes: Mapping[str, RouteCache], redis_url: str | None, prefix: str, timeout: float,
                        metrics: Metrics) -> ServiceCache:
    """The cache of the routes with `cache:` (by route name), in Redis under `prefix` + `services:` when a URL is
    given, else one memory LRU per route."""
    if redis_url:
        from sluice.routing.cache_redis import RedisStore  # redis-py only when used

        return ServiceCache({}, RedisStore(redis_url, prefix + "services:", timeout, metrics.cache_failures),
                            metrics)
    return ServiceCache({name: MemoryStore(policy.max_entries, policy.max_bytes) for name, policy in routes.items()},
                        None, metrics)
