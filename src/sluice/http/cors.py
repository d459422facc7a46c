"""CORS as the Fetch standard's CORS protocol has it: the `cors:` policy, the gateway's own answer to a preflight,
and the headers it puts on every other response (docs/cors.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluice.http.asgi import JSON_TYPE, Message, Scope, Send, send_bytes

if TYPE_CHECKING:
    from sluice.services.options import RouteConfig
    from sluice.services.rules import RuleTable

Header = tuple[bytes, bytes]

SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
"""A browser never checks these against `Access-Control-Allow-Methods`, so a preflight always grants them."""
SAFELISTED_REQUEST_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
"""Always allowed: a browser lists them in `Access-Control-Request-Headers` only for values outside the safelist
(`Content-Type: application/json`), which a JSON API must accept anyway."""
_SAFELISTED_RESPONSE_HEADERS = frozenset({b"cache-control", b"content-language", b"content-length", b"content-type",
                                          b"expires", b"last-modified", b"pragma"})
_NEVER_EXPOSED = frozenset({b"set-cookie", b"set-cookie2"})

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HOST = r"(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)"
_ORIGIN = re.compile(rf"[a-z][a-z0-9+.-]*://{_HOST}(?::[0-9]{{1,5}})?\Z")
"""A serialized origin as a browser sends it: lower-case scheme and host, a port only when not the default."""
_ENTRY = re.compile(rf"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<wild>\*\.)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}|\*))?\Z")
_LABELS = r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
"""What `*.` stands for: one or more DNS labels."""

_DECIDED = 1024
_ACAO = b"access-control-allow-origin"
_ACAC = (b"access-control-allow-credentials", b"true")
_VARY_ORIGIN = b"Origin"


class CorsConfig(BaseModel):
    """The `cors:` section, globally or on one route: which origins' pages may call the gateway from a browser."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_origins: list[str] = Field(min_length=1)
    """Exact origins (`https://app.example.com`, `http://localhost:5173`), patterns (`https://*.example.com`: one
    or more labels before `.example.com`; `http://localhost:*`: any port), or `*` alone (any origin; with
    `allow_credentials`, the request's origin is echoed instead)."""
    allow_methods: list[str] = ["GET", "HEAD", "POST"]
    """Methods a preflight grants (`*`: any); GET, HEAD and POST are always granted, as browsers never check them."""
    allow_headers: list[str] = []
    """Request headers a page may send beyond the CORS-safelisted ones (`*`: any, by echoing what is asked)."""
    expose_headers: list[str] = []
    """Response headers a page may read beyond the safelisted ones (`*`: all of them)."""
    allow_credentials: bool = False
    """Let pages send credentials (cookies, HTTP authentication, client certificates) and read the answers."""
    max_age_seconds: int | None = Field(600, ge=0)
    """How long a browser may reuse a preflight's answer (Chromium caps it at 7,200 s, Firefox at 86,400 s);
    null leaves the header out (browsers then keep it 5 s)."""

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, entries: list[str]) -> list[str]:
        lowered = [entry.strip().lower() for entry in entries]
        if "*" in lowered and len(lowered) > 1:
            raise ValueError("'*' allows every origin: list it alone")
        for entry in lowered:
            if entry != "*":
                _parse_entry(entry)
        return lowered

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        return [_checked_token(method, "method").upper() for method in methods]

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _headers(cls, names: list[str]) -> list[str]:
        return [_checked_token(name, "header name").lower() for name in names]


def _checked_token(value: str, what: str) -> str:
    value = value.strip()
    if value != "*" and not _TOKEN.match(value):
        raise ValueError(f"{value!r} is not an HTTP {what}")
    return value


def _parse_entry(entry: str) -> re.Match[str]:
    if entry == "null":
        raise ValueError("'null' is the origin of every sandboxed frame and local file, whoever made it: it cannot "
                         "be allowed safely (`*` without credentials covers it)")
    match = _ENTRY.match(entry)
    if match is None:
        head = re.split(r"[/?#]", entry.partition("://")[2], maxsplit=1)[0]
        if head and head != entry.partition("://")[2] and _ENTRY.match(f"{entry.partition('://')[0]}://{head}"):
            raise ValueError(f"{entry!r}: an origin is scheme://host[:port], with no path (not even a trailing /)")
        raise ValueError(f"{entry!r} is not an origin (scheme://host[:port]) nor a pattern (https://*.example.com, "
                         "http://localhost:*); '*' may only stand for the leftmost labels of the host or for the port")
    if match["wild"] and match["host"].startswith("["):
        raise ValueError(f"{entry!r}: an IP address has no subdomains for '*.' to stand for")
    return match


def _compile_pattern(entry: str) -> re.Pattern[str] | None:
    """The regular expression of a pattern entry (None for an exact origin). Every character taken from the
    entry is escaped: only `*.` and `:*` become expressions, so an entry cannot smuggle regex syntax in."""
    match = _parse_entry(entry)
    if not match["wild"] and match["port"] != "*":
        return None
    regex = re.escape(match["scheme"]) + "://" + (_LABELS if match["wild"] else "") + re.escape(match["host"])
    port = match["port"]
    if port == "*":
        regex += r"(?::[0-9]{1,5})?"
    elif port is not None:
        regex += re.escape(":" + port)
    return re.compile(regex, re.ASCII)


class CorsPolicy:
    """One compiled `cors:` policy: whether an origin is allowed, the preflight's answer, the response's headers."""

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        self.any_origin = config.allow_origins == ["*"]
        self.credentials = config.allow_credentials
        self.static = self.any_origin and not self.credentials
        """`Access-Control-Allow-Origin: *` for everyone: the same answer for every request, so no `Vary`."""
        exact = [entry for entry in config.allow_origins if entry != "*"]
        self.patterns = [pattern for pattern in map(_compile_pattern, exact) if pattern is not None]
        self.origins = frozenset(entry for entry in exact if _compile_pattern(entry) is None)
        self.any_method = "*" in config.allow_methods
        self.methods = frozenset(config.allow_methods) | SAFELISTED_METHODS
        self.methods_value = ", ".join(method for method in config.allow_methods if method != "*").encode()
        self.any_header = "*" in config.allow_headers
        self.headers = frozenset(config.allow_headers) | SAFELISTED_REQUEST_HEADERS
        self.expose_all = "*" in config.expose_headers
        expose = b"*" if self.expose_all else ", ".join(config.expose_headers).encode()
        self.max_age = None if config.max_age_seconds is None else str(config.max_age_seconds).encode()
        self.preflight_vary = (b"Access-Control-Request-Method, Access-Control-Request-Headers" if self.static
                               else b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        tail: list[Header] = [_ACAC] if self.credentials else []
        if expose and not (self.expose_all and self.credentials):  # with credentials `*` is a literal name
            tail.append((b"access-control-expose-headers", expose))
        self.allowed_tail = tail
        """What an allowed origin's response gets after its `Access-Control-Allow-Origin`."""
        self._decided: dict[str, bool] = {}
        """Origins already judged (pages come from a few origins; the first `_DECIDED` are remembered)."""

    def allows(self, origin: str) -> bool:
        if self.static:
            return True
        known = self._decided.get(origin)
        if known is not None:
            return known
        if self.any_origin:  # echoed with credentials: only a well-formed origin, never `null`
            allowed = _ORIGIN.match(origin) is not None
        else:
            allowed = origin in self.origins or any(pattern.fullmatch(origin) for pattern in self.patterns)
        if len(self._decided) < _DECIDED:
            self._decided[origin] = allowed
        return allowed

    def preflight(self, headers: Mapping[bytes, bytes]) -> tuple[int, list[Header], bytes]:
        """The gateway's answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
        204 with the allow headers, or 403 with none of them and a JSON body naming what was refused."""
        origin = headers[b"origin"].decode("latin-1")
        method = headers[b"access-control-request-method"].decode("latin-1").strip()
        requested = _names(headers.get(b"access-control-request-headers", b""))
        vary = (b"vary", self.preflight_vary)
        refusal = self._refusal(origin, method, requested)
        if refusal is not None:
            body = orjson.dumps({"error": {"message": f"CORS preflight refused: {refusal}.", "type":
                                           "invalid_request_error", "param": None, "code": "cors_preflight_refused"}})
            return 403, [JSON_TYPE, (b"content-length", str(len(body)).encode()), vary], body
        answer: list[Header] = [(_ACAO, b"*" if self.static else headers[b"origin"])]
        if self.credentials:
            answer.append(_ACAC)
        answer.append((b"access-control-allow-methods",
                       method.encode("latin-1") if self.any_method or not self.methods_value else self.methods_value))
        if requested:
            answer.append((b"access-control-allow-headers", ", ".join(requested or ()).encode("latin-1")))
        if self.max_age is not None:
            answer.append((b"access-control-max-age", self.max_age))
        answer.append(vary)
        return 204, answer, b""

    def _refusal(self, origin: str, method: str, requested: list[str] | None) -> str | None:
        if not self.allows(origin):
            return f"origin {origin[:200]!r} is not allowed"
        if not _TOKEN.match(method):
            return "Access-Control-Request-Method is not a method"
        if not self.any_method and method not in self.methods:
            return f"method {method!r} is not allowed"
        if requested is None:
            return "Access-Control-Request-Headers is not a list of header names"
        if not self.any_header:
            refused = [name for name in requested if name not in self.headers]
            if refused:
                return f"header {refused[0]!r} is not allowed"
        return None

    def wrap(self, origin: bytes | None, send: Send) -> Send:
        """`send` with this policy's headers on the response's start: the app's own `Access-Control-*` headers
        replaced, `Origin` added to `Vary` unless the answer is `*` for everyone."""
        if self.static:
            add: list[Header] = [(_ACAO, b"*"), *self.allowed_tail]
        elif origin is not None and self.allows(origin.decode("latin-1")):
            add = [(_ACAO, origin), *self.allowed_tail]
        else:
            add = []
        vary = not self.static
        expose = self.expose_all and self.credentials and bool(add)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _edited(message.get("headers", ()), add, vary, expose)}
            await send(message)

        return send_with_cors


def _names(value: bytes) -> list[str] | None:
    """`Access-Control-Request-Headers` as lower-case names (None if one is not a header name)."""
    names = [name.strip().lower() for name in value.decode("latin-1").split(",")]
    names = [name for name in names if name]
    return names if all(_TOKEN.match(name) for name in names) else None


def _edited(headers: Iterable[Header], add: list[Header], vary: bool, expose: bool) -> list[Header]:
    kept: list[Header] = []
    vary_at = -1
    has_origin = False
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(b"access-control-"):
            continue  # the gateway's policy answers for this route, not the app's or the service's
        if lower == b"vary":
            vary_at = len(kept)
            tokens = {token.strip().lower() for token in value.split(b",")}
            has_origin = has_origin or b"origin" in tokens or b"*" in tokens
        kept.append((name, value))
    if expose:  # `*` is a literal name with credentials: list the response's own headers instead
        names = [name.lower() for name, _ in kept
                 if name.lower() not in _SAFELISTED_RESPONSE_HEADERS and name.lower() not in _NEVER_EXPOSED]
        if names:
            kept.append((b"access-control-expose-headers", b", ".join(names)))
    kept += add
    if vary and not has_origin:
        if vary_at >= 0:
            name, value = kept[vary_at]
            kept[vary_at] = (name, value + b", " + _VARY_ORIGIN)
        else:
            kept.append((b"vary", _VARY_ORIGIN))
    return kept


class CorsEdge:
    """Which policy a request is under: its route's `cors:` when the service route it matches has one (`false`:
    none, the service answers for itself), else the global one. A preflight is matched as the request it
    announces (`Access-Control-Request-Method` as its method)."""

    def __init__(self, default: CorsPolicy | None, routes: Sequence[RouteConfig] = (),
                 rules: RuleTable | None = None) -> None:
        self.default = default
        self.by_route: dict[int, CorsPolicy | None] = {}
        for index, route in enumerate(routes):
            if route.cors is not None:
                self.by_route[index] = CorsPolicy(route.cors) if route.cors is not False else None
        self.rules = rules if self.by_route else None
        if self.by_route and self.rules is None:
            from sluice.services.rules import RuleTable

            self.rules = RuleTable(routes)
        from sluice.services.options import RESERVED_PREFIXES

        self._builtin = frozenset(RESERVED_PREFIXES)
        self._builtin_below = tuple(prefix + "/" for prefix in RESERVED_PREFIXES)
        """Paths the gateway serves itself, which no service route may take: the global policy applies there."""

    async def enter(self, scope: Scope, send: Send) -> tuple[bool, Send]:
        """(True, send) once a preflight is answered here; else (False, `send` adding the headers, if any)."""
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
        headers = dict(scope["headers"]) if origin is not None and scope["method"] == "OPTIONS" else None
        preflight = headers is not None and b"access-control-request-method" in headers
        policy = self.default if self.rules is None else self.policy_for(scope, headers, preflight)
        if policy is None:
            return False, send
        if preflight and headers is not None:
            status, answer, body = policy.preflight(headers)
            await send_bytes(send, status, body, answer)
            return True, send
        return False, policy.wrap(origin, send)

    def refuses_websocket(self, route_index: int, headers: Mapping[bytes, bytes]) -> str | None:
        """Why a WebSocket handshake to the route at `route_index` must be refused (its `Origin` is not one the
        route's policy, or else the global one, allows), or None. Browsers never preflight a WebSocket and send
        the page's cookies with it, so this check is what stops another site's page from opening the socket as
        its visitor (cross-site WebSocket hijacking). A handshake without `Origin` is not a browser's: allowed."""
        policy = self.by_route[route_index] if route_index in self.by_route else self.default
        origin = headers.get(b"origin")
        if policy is None or origin is None:
            return None
        text = origin.decode("latin-1")
        return None if policy.allows(text) else f"origin {text[:200]!r} is not allowed"

    def policy_for(self, scope: Scope, headers: Mapping[bytes, bytes] | None, preflight: bool) -> CorsPolicy | None:
        path: str = scope["path"]
        if self.rules is None or path in self._builtin or path.startswith(self._builtin_below):
            return self.default
        if headers is None:
            headers = dict(scope["headers"])
        method = scope["method"]
        if preflight:
            method = headers[b"access-control-request-method"].decode("latin-1").strip()
        query: bytes = scope.get("query_string", b"")
        rule = self.rules.match(method, path, headers,
                                dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {})
        if rule is None or rule.index not in self.by_route:
            return self.default
        return self.by_route[rule.index]


def cors_edge(cors: CorsConfig | None, routes: Sequence[RouteConfig] = (),
              rules: RuleTable | None = None) -> CorsEdge | None:
    """The CORS edge for a config, or None when neither `cors:` nor any route's `cors:` is set (then the request
    path does not look at CORS at all)."""
    if cors is None and all(route.cors is None for route in routes):
        return None
    edge = CorsEdge(CorsPolicy(cors) if cors is not None else None, routes, rules)
    return edge if edge.default is not None or any(policy is not None for policy in edge.by_route.values()) else None


RouteCors = CorsConfig | Literal[False] | None
"""A route's `cors:`: a policy of its own, `false` (none: the service answers preflights itself), or unset (the
global one)."""
