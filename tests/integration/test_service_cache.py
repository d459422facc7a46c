"""The service routes' HTTP cache (RFC 9111) against a real loopback service whose replies carry the headers under
test (from the query: `cc`, `etag`, `vary`, `cookie`, `age`, `expires`) and which counts the requests it gets."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from email.utils import formatdate

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.limits_support import needs_redis, redis_backend
from tests.servers import free_port, serve


def cached_service() -> Starlette:
    counts: Counter[str] = Counter()
    conditions: dict[str, list[str | None]] = {}

    async def reply(request: Request) -> Response:
        path, query = request.url.path, request.query_params
        counts[path] += 1
        conditions.setdefault(path, []).append(request.headers.get("if-none-match"))
        headers = {"cache-control": query["cc"]} if "cc" in query else {}
        for name in ("etag", "vary", "age"):
            if name in query:
                headers[name] = query[name]
        if "cookie" in query:
            headers["set-cookie"] = "session=secret"
        if "expires" in query:
            headers["expires"] = formatdate(time.time() + int(query["expires"]), usegmt=True)
        if "etag" in query and request.headers.get("if-none-match") == query["etag"]:
            return Response(status_code=304, headers=headers)
        return Response(f"{path} #{counts[path]} {request.headers.get('accept-language', '-')}", headers=headers)

    app = Starlette(routes=[Route("/{path:path}", reply, methods=["GET", "HEAD", "POST"])])
    app.state.counts, app.state.conditions = counts, conditions
    return app


def config(url: str, limits: str = "backend: memory") -> str:
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{enabled: false}}
limits: {{{limits}}}
services:
  svc: {{instances: [{{url: "{url}"}}]}}
routes:
  - {{path: "/c/**", service: svc, auth: public, cache: {{enabled: true, max_entries: 100}}}}
  - {{path: "/plain/**", service: svc, auth: public}}
"""


@pytest.fixture(scope="module")
def service() -> Iterator[Starlette]:
    app = cached_service()
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture(scope="module")
def gateway(service: Starlette) -> Iterator[str]:
    with run_gateway(config(service.state.url)) as url:
        yield url


def get(url: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(url + path, headers=headers, timeout=10)


def results(*replies: httpx.Response) -> list[str | None]:
    return [reply.headers.get("x-cache") for reply in replies]


def test_a_fresh_entry_is_a_hit_with_its_age(gateway: str, service: Starlette) -> None:
    first, second = get(gateway, "/c/hit?cc=max-age%3D60"), get(gateway, "/c/hit?cc=max-age%3D60")
    assert results(first, second) == ["MISS", "HIT"]
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["age"] == "0" and "age" not in first.headers
    assert service.state.counts["/c/hit"] == 1


def test_age_counts_the_time_stored_and_the_services_own_age(gateway: str, service: Starlette) -> None:
    get(gateway, "/c/age?cc=max-age%3D60&age=5")
    time.sleep(1.1)
    hit = get(gateway, "/c/age?cc=max-age%3D60&age=5")
    assert results(hit) == ["HIT"] and hit.headers["age"] == "6"


def test_an_entry_expires_after_max_age(gateway: str, service: Starlette) -> None:
    get(gateway, "/c/expiry?cc=max-age%3D1")
    time.sleep(1.2)
    later = get(gateway, "/c/expiry?cc=max-age%3D1")
    assert results(later) == ["MISS"] and later.text.endswith("#2 -")
    assert service.state.counts["/c/expiry"] == 2


def test_expires_gives_freshness_without_max_age(gateway: str, service: Starlette) -> None:
    replies = [get(gateway, "/c/expires?expires=60") for _ in range(2)]
    assert results(*replies) == ["MISS", "HIT"]
    assert service.state.counts["/c/expires"] == 1


def test_s_maxage_wins_over_max_age_in_a_shared_cache(gateway: str, service: Starlette) -> None:
    replies = [get(gateway, "/c/smax?cc=max-age%3D0%2C%20s-maxage%3D60") for _ in range(2)]
    assert results(*replies) == ["MISS", "HIT"]
    assert service.state.counts["/c/smax"] == 1


@pytest.mark.parametrize("directive", ["no-store%2C%20max-age%3D60", "private%2C%20max-age%3D60"])
def test_no_store_and_private_replies_are_never_stored(gateway: str, service: Starlette, directive: str) -> None:
    path = f"/c/never-{directive[:7]}"
    replies = [get(gateway, f"{path}?cc={directive}") for _ in range(3)]
    assert results(*replies) == ["MISS"] * 3
    assert service.state.counts[path] == 3


def test_a_no_cache_reply_is_revalidated_before_each_use(gateway: str, service: Starlette) -> None:
    replies = [get(gateway, '/c/nocache?cc=no-cache&etag="v1"') for _ in range(3)]
    assert results(*replies) == ["MISS", "REVALIDATED", "REVALIDATED"]
    assert [reply.status_code for reply in replies] == [200] * 3
    assert replies[2].content == replies[0].content
    assert service.state.conditions["/c/nocache"] == [None, '"v1"', '"v1"']


def test_a_stale_entry_is_revalidated_with_its_etag_and_a_304_refreshes_it(gateway: str, service: Starlette
                                                                           ) -> None:
    path = '/c/etag?cc=max-age%3D1&etag="e1"'
    first = get(gateway, path)
    time.sleep(1.2)
    revalidated, hit = get(gateway, path), get(gateway, path)
    assert results(first, revalidated, hit) == ["MISS", "REVALIDATED", "HIT"]
    assert revalidated.status_code == 200 and revalidated.content == first.content
    assert revalidated.headers["age"] == "0"
    assert service.state.conditions["/c/etag"] == [None, '"e1"']


def test_a_callers_if_none_match_on_a_fresh_entry_gets_a_304_from_the_gateway(gateway: str, service: Starlette
                                                                               ) -> None:
    path = '/c/inm?cc=max-age%3D60&etag="abc"'
    get(gateway, path)
    matched = get(gateway, path, **{"If-None-Match": 'W/"abc"'})
    other = get(gateway, path, **{"If-None-Match": '"zzz"'})
    assert (matched.status_code, matched.content, results(matched)) == (304, b"", ["HIT"])
    assert matched.headers["etag"] == '"abc"'
    assert (other.status_code, results(other)) == (200, ["HIT"]) and other.text.startswith("/c/inm #1")
    assert service.state.counts["/c/inm"] == 1


def test_vary_keeps_one_entry_per_value_of_the_varying_header(gateway: str, service: Starlette) -> None:
    path = "/c/vary?cc=max-age%3D60&vary=Accept-Language"
    replies = [get(gateway, path, **{"Accept-Language": language}) for language in ("en", "fr", "en", "fr")]
    assert results(*replies) == ["MISS", "MISS", "HIT", "HIT"]
    assert [reply.text for reply in replies] == ["/c/vary #1 en", "/c/vary #2 fr", "/c/vary #1 en", "/c/vary #2 fr"]
    assert service.state.counts["/c/vary"] == 2


def test_a_reply_setting_a_cookie_is_shared_only_when_public_and_never_with_its_cookie(
        gateway: str, service: Starlette) -> None:
    private = [get(gateway, "/c/cookie?cc=max-age%3D60&cookie=1") for _ in range(2)]
    public = [get(gateway, "/c/cookie-public?cc=public%2C%20max-age%3D60&cookie=1") for _ in range(2)]
    assert results(*private) == ["MISS", "MISS"] and service.state.counts["/c/cookie"] == 2
    assert results(*public) == ["MISS", "HIT"] and service.state.counts["/c/cookie-public"] == 1
    assert "set-cookie" in public[0].headers and "set-cookie" not in public[1].headers


def test_post_is_never_cached(gateway: str, service: Starlette) -> None:
    replies = [httpx.post(gateway + "/c/post?cc=max-age%3D60", content=b"x", timeout=10) for _ in range(2)]
    assert [reply.status_code for reply in replies] == [200, 200]
    assert results(*replies) == [None, None]
    assert service.state.counts["/c/post"] == 2


def test_a_route_without_cache_is_not_cached(gateway: str, service: Starlette) -> None:
    replies = [get(gateway, "/plain/x?cc=max-age%3D60") for _ in range(2)]
    assert results(*replies) == [None, None] and service.state.counts["/plain/x"] == 2


def test_a_callers_no_cache_and_max_age_are_honoured(gateway: str, service: Starlette) -> None:
    path = "/c/client?cc=max-age%3D60"
    get(gateway, path)
    forced = get(gateway, path, **{"Cache-Control": "no-cache"})
    time.sleep(1.1)
    too_old = get(gateway, path, **{"Cache-Control": "max-age=0"})
    assert results(forced, too_old) == ["MISS", "MISS"]
    assert service.state.counts["/c/client"] == 3


@needs_redis
@pytest.mark.redis
def test_two_gateways_sharing_redis_share_entries(service: Starlette) -> None:
    with redis_backend() as backend, \
            run_gateway(config(service.state.url, backend.yaml), **backend.settings) as one, \
            run_gateway(config(service.state.url, backend.yaml), **backend.settings) as two:
        first = get(one, "/c/redis?cc=max-age%3D60")
        prefix = backend.yaml.split("redis_prefix: '")[1].rstrip("'")
        client = redis.Redis.from_url(backend.settings["redis_url"])
        deadline = time.monotonic() + 2
        while not list(client.scan_iter(match=prefix + "services:*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        client.close()
        second = get(two, "/c/redis?cc=max-age%3D60")
    assert results(first, second) == ["MISS", "HIT"] and second.content == first.content
    assert service.state.counts["/c/redis"] == 1


def test_redis_down_still_serves_every_request_and_counts_the_failures(service: Starlette) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    limits = "backend: memory, redis_timeout_seconds: 0.2"
    with run_gateway(config(service.state.url, limits), redis_url=closed) as url:
        started = time.monotonic()
        replies = [get(url, "/c/down?cc=max-age%3D60") for _ in range(3)]
        took = time.monotonic() - started
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10).text
    assert [reply.status_code for reply in replies] == [200] * 3 and results(*replies) == ["MISS"] * 3
    assert service.state.counts["/c/down"] == 3 and took < 2
    failures = [line for line in metrics.splitlines() if line.startswith("sluice_cache_failures_total")]
    assert sum(float(line.split()[-1]) for line in failures) >= 3
