"""Provider passthrough: a provider's base URL and credentials, the headers both ways, and the forwarded call.

A caller's request to `/provider/{name}{suffix}` goes to `{base_url}{suffix}` with the caller's method, query,
headers and body. The caller's own credentials (headers, and query parameters such as `?key=`) and every
hop-by-hop header are dropped, the provider's credentials are injected, and the reply comes back as the upstream
sent it (no redirects followed, no decompression). `safe_suffix` in `passthrough_paths.py` guarantees the URL
stays under the base URL.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus, urlencode

from pyreqwest.client import Client
from pyreqwest.exceptions import RequestError
from pyreqwest.http import Url

from sluice.config import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    MockProviderConfig,
    OpenAIProviderConfig,
    SluiceConfig,
)
from sluice.errors import GatewayError, InvalidRequest
from sluice.providers.passthrough_paths import safe_query, safe_suffix
from sluice.providers.upstream import OpenStream, body_chunks, pooled_client, transport_error
from sluice.services import h1

Headers = Iterable[tuple[bytes, bytes]]
UpstreamConfig = OpenAIProviderConfig | AzureProviderConfig | AnthropicProviderConfig | GeminiProviderConfig

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"transfer-encoding", b"upgrade",
})
"""Headers that describe one connection (RFC 9110 §7.6.1) and never cross a proxy, in either direction."""
_HOP_BY_HOP_NAMES = frozenset(name.decode("latin-1") for name in HOP_BY_HOP)
_CONNECTION_ONLY = frozenset({"keep-alive", "close"})
"""`Connection` values that name no other header (nearly every reply's)."""
_CONNECTION_ONLY_BYTES = frozenset(value.encode() for value in _CONNECTION_ONLY)

CALLER_ONLY = frozenset({
    b"host", b"content-length", b"expect", b"authorization", b"x-api-key",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id",
})
"""Request headers the gateway drops or rewrites: its own credentials, framing it recomputes, forwarding info."""

CHECKED_PATHS = 1024
"""How many checked paths a target remembers (`PassthroughTarget.url`); past that it starts again."""

QUERY_CREDENTIALS = frozenset({
    "key", "api_key", "apikey", "x_api_key", "x_goog_api_key", "access_token", "auth_token", "token",
    "subscription_key", "ocp_apim_subscription_key",
})
"""Query parameters that carry credentials (Gemini's `?key=`, `?api_key=`, `?api-key=`, …), compared lower-case
with `-` as `_`: a caller's are never forwarded; the provider's own credentials are the configured ones."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Who asked and how, for the `X-Forwarded-*` and `X-Request-ID` headers sent upstream."""

    client: str | None
    proto: str
    host: str | None
    request_id: str


def hop_by_hop(headers: Headers) -> frozenset[bytes]:
    """The fixed hop-by-hop names plus every name listed in a `Connection` header."""
    named = {token.strip().lower() for name, value in headers if name == b"connection" for token in value.split(b",")}
    return HOP_BY_HOP | named if named else HOP_BY_HOP


def without_credentials(query: str) -> str:
    """`query` minus every parameter named in `QUERY_CREDENTIALS` (names percent-decoded first); the other
    parameters are kept byte for byte, in order."""
    if not query:
        return query
    kept = [part for part in query.split("&")
            if unquote_plus(part.partition("=")[0]).strip().lower().replace("-", "_") not in QUERY_CREDENTIALS]
    return "&".join(kept)


def _with_defaults(query: str, params: Mapping[str, str]) -> str:
    """`query` plus each of `params` the caller did not pass."""
    given = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    missing = {name: value for name, value in params.items() if name not in given}
    if not missing:
        return query
    return f"{query}&{urlencode(missing)}" if query else urlencode(missing)


def dropped_from(caller: list[tuple[bytes, bytes]], headers: Mapping[bytes, bytes], fixed: frozenset[bytes]
                 ) -> frozenset[bytes]:
    """`fixed` plus, when the request has a `Connection` header (`headers`: the request's by name), the names it
    lists: what a request's headers must lose on their way upstream."""
    return fixed | hop_by_hop(caller) if b"connection" in headers else fixed


def forwarded_for(caller: Headers, client: str, headers: Mapping[bytes, bytes] | None = None) -> str:
    """The caller's `X-Forwarded-For` chain with `client` appended, unless the server already took `client` from
    the end of that chain (uvicorn's proxy_headers does, for trusted proxies). `headers`, the request's headers by
    name, saves the scan when it has none."""
    if headers is not None and b"x-forwarded-for" not in headers:
        return client
    prior = b", ".join(value for name, value in caller if name == b"x-forwarded-for").decode("latin-1")
    if not prior:
        return client
    if prior.rsplit(",", 1)[-1].strip() == client:
        return prior
    return f"{prior}, {client}"


class PassthroughTarget:
    """One provider as a raw HTTP upstream: base URL, injected credentials and a pooled client of its own.

    The client is separate from the provider's: it must neither decompress replies nor follow redirects, and
    both are client-wide settings.
    """

    def __init__(self, name: str, config: UpstreamConfig | BedrockProviderConfig, credentials: Mapping[str, str],
                 defaults: Mapping[str, str], params: Mapping[str, str]) -> None:
        self.name = name
        self.config = config
        self.base = config.base_url.rstrip("/")
        self._origin = Url(self.base)
        self.credentials = dict(credentials)
        """Headers that replace whatever the caller sent under the same name."""
        self._dropped = HOP_BY_HOP | CALLER_ONLY | frozenset(name.lower().encode("latin-1") for name in credentials)
        """The caller's headers never sent: hop-by-hop, the gateway's own, those the credentials replace."""
        self.defaults = dict(defaults)
        """Headers sent only when the caller sent none of that name (`anthropic-version`)."""
        self.params = dict(params)
        """Query parameters added when the caller did not pass them (Azure's `api-version`)."""
        self._client: Client | None = None
        self._h1: h1.H1Client | None = None
        """services/h1.py's client, for a provider on plain http (a local model server): it says why."""
        self._checked: dict[str, str] = {}
        """Paths (without a query) that passed `url`'s checks, and their URLs."""

    async def start(self) -> None:
        timeout = self.config.timeout
        self._client = pooled_client(self.config.max_connections, timeout.connect, timeout.read, raw=True,
                                     total_seconds=timeout.total)
        if self.base.startswith("http://") and h1.usable():
            self._h1 = h1.H1Client(self.config.max_connections, timeout.connect, timeout.read, timeout.total)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.close()
            self._h1 = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def url(self, suffix: str, query: bytes) -> str:
        """`{base_url}{suffix}?{query}`, refusing any suffix or query that could leave the base URL; credentials
        in the caller's query are dropped. The URLs of paths without a query that passed are remembered (a few
        paths are most of the traffic, and checking one costs ~8 µs); a query may carry a caller's credentials,
        so those URLs are never kept."""
        if not query:
            known = self._checked.get(suffix)
            if known is not None:
                return known
        text = without_credentials(safe_query(query))
        if self.params:
            text = _with_defaults(text, self.params)
        url = self.base + safe_suffix(suffix) + (f"?{text}" if text else "")
        if not self._contains(Url(url)):
            raise InvalidRequest("The provider path must stay under the provider's base URL.", code="invalid_path")
        if not query:
            if len(self._checked) >= CHECKED_PATHS:
                self._checked.clear()
            self._checked[suffix] = url
        return url

    def _contains(self, url: Url) -> bool:
        base, base_path = self._origin, self._origin.path.rstrip("/")
        return (url.scheme == base.scheme and url.host_str == base.host_str and url.port == base.port
                and not url.username and url.password is None
                and (url.path == base.path or url.path.startswith(base_path + "/")))

    def headers(self, caller: list[tuple[bytes, bytes]], forwarded: Forwarded,
                by_name: Mapping[bytes, bytes] | None = None) -> list[tuple[str, str]]:
        """The caller's end-to-end headers, with forwarding info and the provider's credentials (`by_name`: the
        request's headers as a dict, when the caller has it, to look names up without a scan)."""
        drop = dropped_from(caller, by_name, self._dropped) if by_name is not None else \
            hop_by_hop(caller) | self._dropped
        out = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in caller if name not in drop]
        out.append(("x-forwarded-for", forwarded_for(caller, forwarded.client or "unknown", by_name)))
        out.append(("x-forwarded-proto", forwarded.proto))
        if forwarded.host:
            out.append(("x-forwarded-host", forwarded.host))
        out.append(("x-request-id", forwarded.request_id))
        out.extend(self.credentials.items())
        if self.defaults:
            sent = by_name if by_name is not None else {name for name, _ in caller}
            out.extend((name, value) for name, value in self.defaults.items() if name.encode() not in sent)
        return out

    def send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Awaitable[OpenStream]:
        """Make the call and return the reply once its headers arrived; its body is read by the caller."""
        if self._client is None:
            raise GatewayError(f"Provider {self.name!r} is not started.")
        if self._h1 is not None and url.startswith("http://"):
            return self._h1.send(method, url, headers, body, None, self.name)
        return self._send(method, url, headers, body)

    async def _send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> OpenStream:
        assert self._client is not None
        builder = self._client.request(method, url).headers(headers)
        if body:
            builder = builder.body_bytes(body)
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        try:
            return OpenStream(request, await request.__aenter__())
        except RequestError as exc:
            raise transport_error(exc, self.name) from exc

    def chunks(self, reply: OpenStream) -> AsyncGenerator[bytes, None]:
        """The reply's body as it arrives; closing the iterator early aborts the upstream request."""
        return body_chunks(reply, self.name)

    async def read(self, reply: OpenStream) -> bytes:
        """The whole reply body, then the reply released."""
        try:
            return await reply.read()
        except RequestError as exc:
            raise transport_error(exc, self.name) from exc
        finally:
            await reply.close()


class UnsignedTarget(PassthroughTarget):
    """A Bedrock provider under `/provider/{name}/…`: refused with a 400, because AWS wants every request signed
    (Signature Version 4 over its method, path, headers and body), which passthrough does not do; forwarded
    unsigned it would only come back 403. No client is opened for it."""

    async def start(self) -> None:
        return None

    def url(self, suffix: str, query: bytes) -> str:
        raise InvalidRequest(f"Provider {self.name!r} is AWS Bedrock, whose requests must each be signed (SigV4); "
                             "passthrough does not sign them, so /provider/{name}/… is not available for it. Use "
                             "/v1/chat/completions with one of its models.", code="passthrough_unsupported")


def reply_headers(reply: OpenStream) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers, minus hop-by-hop ones, as ASGI header pairs (names are lower-case).

    One pass: the names a `Connection` header lists (rarely any but `keep-alive`/`close`) are dropped after it."""
    response: object = reply.response  # a pyreqwest Response, or the lean client's reply in its place
    if type(response) is h1.Reply:
        return _relayed(response.raw_headers)
    out = []
    listed: list[str] | None = None
    for name, value in reply.response.headers.items():
        if name in _HOP_BY_HOP_NAMES:
            if name == "connection" and value.lower() not in _CONNECTION_ONLY:
                (listed := listed or []).append(value)
            continue
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    if listed is not None:
        named = {token.strip().lower().encode("latin-1") for value in listed for token in value.split(",")}
        out = [(name, value) for name, value in out if name not in named]
    return out


def _relayed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`reply_headers` of the lean client's reply (services/h1.py), whose headers were read as bytes: the same
    pairs, without decoding and encoding each."""
    out = []
    listed: list[bytes] | None = None
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"connection" and value.lower() not in _CONNECTION_ONLY_BYTES:
                (listed := listed or []).append(value)
            continue
        out.append((name, value))
    if listed is not None:
        named = {h1.lower(token.strip(h1.SPACE)) for value in listed for token in value.split(b",")}
        out = [(name, value) for name, value in out if name not in named]
    return out


def target_for(name: str, config: UpstreamConfig) -> PassthroughTarget:
    """The passthrough target of one provider entry: its credentials in the header its API expects."""
    key = config.api_key.get_secret_value() if config.api_key is not None else None
    credentials = dict(config.headers)
    defaults: dict[str, str] = {}
    params: dict[str, str] = {}
    if isinstance(config, AzureProviderConfig):
        params["api-version"] = config.api_version
        if key is not None:
            credentials["api-key"] = key
    elif isinstance(config, AnthropicProviderConfig):
        defaults["anthropic-version"] = config.api_version
        if key is not None:
            credentials["x-api-key"] = key
    elif isinstance(config, GeminiProviderConfig):
        if key is not None:
            credentials["x-goog-api-key"] = key  # Gemini's native API takes no Bearer key
    elif key is not None:
        credentials["authorization"] = f"Bearer {key}"
    return PassthroughTarget(name, config, credentials, defaults, params)


def build_targets(config: SluiceConfig) -> dict[str, PassthroughTarget | None]:
    """Every configured provider by name; None for providers with no upstream (mock)."""
    return {name: None if isinstance(entry, MockProviderConfig) else
            UnsignedTarget(name, entry, {}, {}, {}) if isinstance(entry, BedrockProviderConfig) else
            target_for(name, entry)
            for name, entry in config.providers.items()}
