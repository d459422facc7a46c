"""The CORS policy's answers (http/cors.py): which origins are allowed, the preflight's status and headers, the
headers put on a response, and which policy a request is under."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from sluice.http.asgi import Message
from sluice.http.cors import CorsConfig, CorsEdge, CorsPolicy
from sluice.services.options import RouteConfig

APP = "https://app.example.com"


def policy(**fields: Any) -> CorsPolicy:
    return CorsPolicy(CorsConfig(**fields))


def preflight(cors: CorsPolicy, origin: str = APP, method: str = "POST",
              headers: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = {b"origin": origin.encode(), b"access-control-request-method": method.encode()}
    if headers is not None:
        request[b"access-control-request-headers"] = headers.encode()
    status, answer, body = cors.preflight(request)
    return status, {name.decode(): value.decode() for name, value in answer}, orjson.loads(body) if body else {}


def respond(cors: CorsPolicy, origin: str | None, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, str]:
    """The response headers a handler sending `headers` ends up with, joined by name as a browser reads them."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    wrapped = cors.wrap(origin.encode() if origin is not None else None, send)
    asyncio.run(wrapped({"type": "http.response.start", "status": 200, "headers": headers or []}))
    joined: dict[str, str] = {}
    for name, value in sent[0]["headers"]:
        key = name.decode().lower()
        joined[key] = f"{joined[key]}, {value.decode()}" if key in joined else value.decode()
    return joined


def test_exact_origins_and_patterns() -> None:
    cors = policy(allow_origins=[APP, "https://*.example.org", "http://localhost:*", "HTTP://127.0.0.1:8080"])
    allowed = [APP, "https://a.example.org", "https://a.b.example.org", "http://localhost", "http://localhost:5173",
               "http://127.0.0.1:8080"]
    refused = ["http://app.example.com", "https://app.example.com:8443", "https://example.org",
               "https://evilexample.org", "https://a.example.org.evil.net", "http://a.example.org",
               "https://a.example.org:444", "http://localhost.evil.net", "http://localhost:5173/x",
               "http://127.0.0.1:8081", "null", "https://app.example.com.evil.net"]
    assert [origin for origin in allowed if not cors.allows(origin)] == []
    assert [origin for origin in refused if cors.allows(origin)] == []


def test_an_entry_is_escaped_not_taken_as_a_regular_expression() -> None:
    cors = policy(allow_origins=["https://api.example.com", "https://*.a-b.example.com"])
    assert cors.allows("https://api.example.com")
    assert not cors.allows("https://apixexample.com")  # the dots are literal
    assert not cors.allows("https://x.a-bxexample.com")
    for entry in ("https://(a|b).example.com", "https://.*", "https://a.example.com|https://evil.net",
                  "https://app-*.example.com", "https://*example.com", "https://a.*.example.com",
                  "https://example.*", "https://[a-z]+.example.com"):
        with pytest.raises(ValidationError, match="not an origin"):
            CorsConfig(allow_origins=[entry])


@pytest.mark.parametrize(("entry", "reason"), [
    ("https://app.example.com/", "no path"),
    ("https://app.example.com/api", "no path"),
    ("null", "cannot be allowed safely"),
    ("app.example.com", "not an origin"),
    ("https://*.[::1]", "an IP address has no subdomains"),
])
def test_bad_origin_entries_are_config_errors(entry: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        CorsConfig(allow_origins=[entry])


def test_star_stands_alone_and_methods_and_headers_are_tokens() -> None:
    with pytest.raises(ValidationError, match="list it alone"):
        CorsConfig(allow_origins=["*", APP])
    with pytest.raises(ValidationError, match="not an HTTP method"):
        CorsConfig(allow_origins=[APP], allow_methods=["GET POST"])
    with pytest.raises(ValidationError, match="not an HTTP header name"):
        CorsConfig(allow_origins=[APP], allow_headers=["x-a\r\nx-b"])
    config = CorsConfig(allow_origins=[" HTTPS://App.Example.com "], allow_methods=["put"], allow_headers=["X-Key"])
    assert (config.allow_origins, config.allow_methods, config.allow_headers) == ([APP], ["PUT"], ["x-key"])


def test_allowed_preflight() -> None:
    cors = policy(allow_origins=[APP], allow_methods=["GET", "POST", "PUT"], allow_headers=["authorization"],
                  max_age_seconds=300)
    status, headers, body = preflight(cors, method="PUT", headers="authorization,content-type")
    assert status == 204 and body == {}
    assert headers == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST, PUT",
        "access-control-allow-headers": "authorization, content-type",
        "access-control-max-age": "300",
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }


def test_refused_origin_gets_403_and_none_of_the_allow_headers() -> None:
    cors = policy(allow_origins=[APP], allow_credentials=True)
    status, headers, body = preflight(cors, origin="https://evil.example.net")
    assert status == 403
    assert not [name for name in headers if name.startswith("access-control-")]
    assert headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert body["error"]["code"] == "cors_preflight_refused"
    assert "origin 'https://evil.example.net' is not allowed" in body["error"]["message"]


def test_preflight_with_a_method_or_header_not_allowed() -> None:
    cors = policy(allow_origins=[APP], allow_methods=["PUT"], allow_headers=["x-trace"])
    status, headers, body = preflight(cors, method="DELETE")
    assert status == 403 and "access-control-allow-origin" not in headers
    assert "method 'DELETE' is not allowed" in body["error"]["message"]
    status, headers, body = preflight(cors, method="PUT", headers="x-trace,x-secret")
    assert status == 403 and "access-control-allow-origin" not in headers
    assert "header 'x-secret' is not allowed" in body["error"]["message"]
    status, headers, body = preflight(cors, method="PUT", headers="x-ok,bad header")
    assert status == 403 and "not a list of header names" in body["error"]["message"]
    # Methods a browser never checks and the safelisted request headers are granted whatever the lists say.
    status, headers, _ = preflight(cors, method="POST", headers="content-type,x-trace")
    assert status == 204 and headers["access-control-allow-methods"] == "PUT"
    assert headers["access-control-allow-headers"] == "content-type, x-trace"


def test_wildcards_without_credentials() -> None:
    cors = policy(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], expose_headers=["*"],
                  max_age_seconds=None)
    status, headers, _ = preflight(cors, origin="null", method="PURGE", headers="x-anything,authorization")
    assert status == 204
    assert headers == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "PURGE",
        "access-control-allow-headers": "x-anything, authorization",
        "vary": "Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    # The same answer for every request, with an Origin or without: `*`, and no Vary on Origin.
    for origin in (APP, None):
        assert respond(cors, origin) == {"access-control-allow-origin": "*", "access-control-expose-headers": "*"}


def test_wildcards_with_credentials_echo_instead_of_star() -> None:
    cors = policy(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], expose_headers=["*"],
                  allow_credentials=True)
    status, headers, _ = preflight(cors, method="PATCH", headers="authorization")
    assert status == 204
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "PATCH"
    assert headers["access-control-allow-headers"] == "authorization"
    assert headers["vary"].startswith("Origin, ")
    assert preflight(cors, origin="null")[0] == 403  # echoing `null` would let in every sandboxed page
    reply = respond(cors, APP, [(b"content-type", b"application/json"), (b"x-request-id", b"r1"),
                                (b"set-cookie", b"a=b"), (b"ratelimit-remaining", b"9")])
    assert reply["access-control-allow-origin"] == APP
    assert reply["access-control-allow-credentials"] == "true"
    # `*` is a literal name under credentials, so the response's own headers are listed.
    assert reply["access-control-expose-headers"] == "x-request-id, ratelimit-remaining"
    assert reply["vary"] == "Origin"


def test_response_headers_for_allowed_refused_and_absent_origins() -> None:
    cors = policy(allow_origins=[APP], expose_headers=["x-request-id"])
    assert respond(cors, APP) == {"access-control-allow-origin": APP, "access-control-expose-headers": "x-request-id",
                                  "vary": "Origin"}
    assert respond(cors, "https://evil.example.net") == {"vary": "Origin"}
    assert respond(cors, None) == {"vary": "Origin"}  # so a cached answer without CORS headers is not reused


def test_the_policy_replaces_an_apps_cors_headers_and_merges_vary() -> None:
    cors = policy(allow_origins=[APP])
    reply = respond(cors, "https://evil.example.net", [(b"Access-Control-Allow-Origin", b"*"),
                                                       (b"access-control-allow-credentials", b"true"),
                                                       (b"Vary", b"Accept-Encoding")])
    assert reply == {"vary": "Accept-Encoding, Origin"}
    assert respond(cors, APP, [(b"vary", b"origin")])["vary"] == "origin"
    assert respond(cors, APP, [(b"vary", b"*")])["vary"] == "*"


def route(path: str, **fields: Any) -> RouteConfig:
    return RouteConfig(path=path, service="users", **fields)


def test_a_routes_policy_replaces_the_global_one() -> None:
    """Which policy each request is under, picked through the service route table (services/rules.py)."""
    mine = {"allow_origins": ["https://mine.example.com"]}
    routes = [route("/api/**"), route("/api/users/**", cors=mine), route("/api/raw/**", cors=False),
              route("/api/put-only", methods=["PUT"], cors=mine), route("/**", cors=mine)]
    edge = CorsEdge(policy(allow_origins=[APP]), routes)

    def origins(method: str, path: str, preflight_for: str | None = None) -> list[str] | None:
        headers = {b"access-control-request-method": preflight_for.encode()} if preflight_for else {}
        chosen = edge.policy_for({"path": path, "method": method, "query_string": b""}, headers,
                                 preflight_for is not None)
        return None if chosen is None else chosen.config.allow_origins

    assert origins("GET", "/api/orders/1") == [APP]  # a route without cors: the global policy
    assert origins("GET", "/api/users/1") == ["https://mine.example.com"]
    assert origins("GET", "/api/raw/1") is None  # cors: false, the service answers for itself
    assert origins("OPTIONS", "/api/put-only", preflight_for="PUT") == ["https://mine.example.com"]
    assert origins("OPTIONS", "/api/put-only", preflight_for="GET") == [APP]  # matched as the GET it announces
    assert origins("GET", "/v1/models") == [APP]  # a built-in path: no route takes it, even /**
    assert origins("GET", "/elsewhere") == ["https://mine.example.com"]
