"""A cached service route's side of a request (services/cache.py holds the rules): the lookup before the call,
the conditional headers of a revalidation, the answers from an entry, the store after a cacheable reply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.services.cache import (
    HIT,
    MISS,
    REVALIDATED,
    ServiceCache,
    Stored,
    directives,
    not_modified_for,
    primary_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sluice.http.asgi import Send
    from sluice.pipeline.flow import Flow
    from sluice.services.options import RouteCache
    from sluice.services.rules import Rule

CACHED_METHODS = frozenset({"GET", "HEAD"})
_CONDITIONS = frozenset({"if-none-match", "if-modified-since"})
Headers = list[tuple[bytes, bytes]]


class CachedCall:
    """One GET or HEAD on a route with `cache:`: what was found, and what may be stored."""

    def __init__(self, flow: Flow, cache: ServiceCache, rule: Rule, policy: RouteCache, method: str, key: bytes,
                 upstream: list[tuple[str, str]]) -> None:
        self.flow, self.cache, self.policy, self.key, self.upstream = flow, cache, policy, key, upstream
        self.method = method
        self.route = str(rule.index)
        self.label = rule.config.path or rule.config.path_regex or self.route
        control = directives(flow.headers.get(b"cache-control"))
        self.may_store = "no-store" not in control
        self.must_ask = "no-cache" in control
        self.max_age = int(control["max-age"]) if control.get("max-age", "").isdigit() else None
        self.entry: Stored | None = None

    @property
    def usable(self) -> bool:
        """Whether the entry found answers this request without asking the service."""
        entry = self.entry
        return entry is not None and entry.fresh and not self.must_ask and (
            self.max_age is None or entry.age <= self.max_age)

    def conditional(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The upstream headers, asking whether the stale entry is still current when it has a validator."""
        entry = self.entry
        if entry is None:
            return headers
        etag, modified = entry.header(b"etag"), entry.header(b"last-modified")
        if etag is None and modified is None:
            return headers
        out = [(name, value) for name, value in headers if name.lower() not in _CONDITIONS]
        if etag is not None:
            out.append(("if-none-match", etag.decode("latin-1")))
        if modified is not None:
            out.append(("if-modified-since", modified.decode("latin-1")))
        return out

    @property
    def revalidating(self) -> bool:
        entry = self.entry
        return entry is not None and (entry.header(b"etag") is not None or entry.header(b"last-modified") is not None)

    async def answer(self, send: Send, entry: Stored, result: str, edit: Callable[[Headers], Headers]) -> None:
        """Answer from the entry: a 304 when the caller's own conditions hold, else the stored reply."""
        flow = self.flow
        exchange = flow.exchange
        exchange.cache = result
        self.cache.count(self.label, result)
        if result == HIT:
            exchange.latency_upstream = 0.0
        not_modified = not_modified_for(flow.headers, entry)
        status = 304 if not_modified else entry.status
        exchange.status = status
        body = b"" if not_modified or self.method == "HEAD" else entry.body
        exchange.response_body = body
        headers = edit(entry.served_headers(not_modified=not_modified))
        headers += [(b"x-cache", result.encode()), *flow.response_headers()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refreshed(self, not_modified: Headers) -> Stored:
        """The entry after the service answered 304 to the revalidation."""
        assert self.entry is not None
        return self.cache.refreshed(self.route, self.entry, not_modified, self.upstream, self.policy)

    def storable(self, status: int, headers: Headers) -> tuple[dict[str, str], float, bool] | None:
        if not self.may_store:
            return None
        return self.cache.storable(status, headers, self.upstream, self.policy)

    def missed(self) -> Headers:
        """The reply came from the service: counted, and said."""
        self.flow.exchange.cache = MISS
        self.cache.count(self.label, MISS)
        return [(b"x-cache", MISS.encode())]

    def store(self, status: int, headers: Headers, body: bytes, verdict: tuple[dict[str, str], float, bool]
              ) -> None:
        named, fresh_for, revalidate = verdict
        self.cache.store(self.route, self.key, status, headers, body, self.upstream, fresh_for, revalidate, named)


async def look_up(flow: Flow, rule: Rule, service: str, method: str, path: str, upstream: list[tuple[str, str]]
                  ) -> CachedCall | None:
    """The cached side of this request (its entry looked up), or None when the route or method is not cached."""
    policy = rule.config.cache
    if policy is None or method not in CACHED_METHODS:
        return None
    registry = flow.gateway.services
    assert registry is not None
    call = CachedCall(flow, registry.response_cache(flow.gateway), rule, policy, method,
                      primary_key(service, method, path), upstream)
    call.entry = await call.cache.lookup(call.route, call.key, upstream)
    return call


__all__ = ["HIT", "MISS", "REVALIDATED", "CachedCall", "look_up"]
