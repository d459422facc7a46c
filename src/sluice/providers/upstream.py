"""The pooled HTTP client one provider uses, and the one map from transport failures to gateway errors.

The client is pyreqwest (Rust's reqwest/hyper): measured in docs/benchmarks.md at about a third of
aiohttp's CPU time per proxied request, which is most of what a gateway request costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import RequestError, RequestTimeoutError
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from sluice.config import Timeouts
from sluice.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnreachable

POOL_MAX_IDLE_PER_HOST = 64
"""Keep-alive connections kept per upstream host once requests finish (reqwest keeps every one for 90 s): after a
burst of 2,000 slow requests the other ~1,900 idle connections held ~25 MB (docs/benchmarks.md, "Memory"). Steady
load up to the pool's `max_connections` still reuses its connections; only a burst above 64 reconnects after it."""


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Turn the client's timeouts and transport failures into UpstreamTimeout / UpstreamUnreachable."""
    try:
        yield
    except RequestError as exc:
        raise transport_error(exc, provider) from exc


def transport_error(exc: RequestError, provider: str) -> GatewayError:
    """The gateway's error for one of the client's: UpstreamTimeout or UpstreamUnreachable. For the per-request
    paths, which catch `RequestError` themselves (a `with map_transport_errors` costs ~1 µs each time)."""
    if isinstance(exc, RequestTimeoutError):
        return UpstreamTimeout(f"Upstream provider {provider!r} timed out.")
    return UpstreamUnreachable(f"Upstream provider {provider!r} could not be reached: {type(exc).__name__}.")


@dataclass(slots=True)
class OpenStream:
    """A reply whose headers arrived and whose body is still to be read; `close` releases it."""

    request: StreamRequest
    response: Response

    @property
    def status(self) -> int:
        return self.response.status

    async def read(self) -> bytes:
        return bytes(await self.response.bytes())

    async def close(self) -> None:
        await self.request.__aexit__(None, None, None)


def pooled_client(max_connections: int, connect_seconds: float, read_seconds: float, *, raw: bool = False,
                  total_seconds: float | None = None) -> Client:
    """A pooled client: statuses never raised, idle keep-alive connections bounded, each call within
    `total_seconds` when given (reqwest's own deadline, from connecting to the body's end: no timer of ours per
    request); `raw` for relaying replies as they are (no decompression, no redirects followed, no Referer), as
    passthrough and services need."""
    builder = (ClientBuilder()
               .max_connections(max_connections)
               .connect_timeout(timedelta(seconds=connect_seconds))
               .read_timeout(timedelta(seconds=read_seconds))
               .error_for_status(False)
               .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST))
    if total_seconds is not None:
        builder = builder.timeout(timedelta(seconds=total_seconds))
    if raw:
        builder = builder.gzip(False).brotli(False).zstd(False).deflate(False).follow_redirects(False).referer(False)
    return builder.build()


class UpstreamClient:
    """One pooled client for one provider, opened at start-up and closed at shutdown."""

    def __init__(self, provider: str, base_url: str, headers: Mapping[str, str], timeout: Timeouts,
                 max_connections: int) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout
        self._max_connections = max_connections
        self._client: Client | None = None

    async def start(self) -> None:
        self._client = pooled_client(self._max_connections, self._timeout.connect, self._timeout.read,
                                     total_seconds=self._timeout.total)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise GatewayError(f"Provider {self.provider!r} is not started.")
        return self._client

    async def post(self, path: str, body: bytes, headers: dict[str, str], params: Mapping[str, str] | None = None
                   ) -> tuple[int, bytes, str | None]:
        """POST and read the whole reply: its status, body and, for an error status, its `Retry-After`.

        Sent as a streamed request without read-ahead although it is read whole: pyreqwest (0.15) detaches, not
        aborts, the task of a request whose `send()` or `__aenter__` is cancelled, so a plain request goes on
        reading a trickling reply until it ends (a caller that left kept an upstream busy for minutes); here that
        task ends with the headers, and leaving the request's context once they are in closes the connection at
        once. It costs ~3 µs more a call. An upstream that has sent no headers yet is still waited for by that
        detached task until `timeout.read` (or `timeout.total`)."""
        builder = self.client.post(self.base_url + path).headers(self.headers | headers).body_bytes(body)
        if params:
            builder = builder.query(dict(params))
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        with map_transport_errors(self.provider):
            reply = await request.__aenter__()
            try:
                status = reply.status
                return status, bytes(await reply.bytes()), reply.get_header("retry-after") if status >= 400 else None
            finally:
                await request.__aexit__(None, None, None)

    async def open(self, path: str, body: bytes, headers: dict[str, str], params: Mapping[str, str] | None = None
                   ) -> OpenStream:
        """POST and return the reply once its headers arrived; the body is read by the caller."""
        builder = self.client.post(self.base_url + path).headers(self.headers | headers).body_bytes(body)
        if params:
            builder = builder.query(dict(params))
        # No read-ahead: pyreqwest otherwise holds the reply until 64 KiB arrived, which buffers a stream.
        request = builder.streamed_read_buffer_limit(0).build_streamed()
        with map_transport_errors(self.provider):
            return OpenStream(request, await request.__aenter__())

    def relay(self, stream: OpenStream) -> AsyncGenerator[bytes, None]:
        """Yield the reply's body as it arrives; closing the iterator early aborts the upstream request."""
        return body_chunks(stream, self.provider)


async def body_chunks(stream: OpenStream, provider: str) -> AsyncGenerator[bytes, None]:
    """The body of an open reply as it arrives, then the reply released; closing early aborts the request."""
    reader = stream.response.body_reader
    try:
        with map_transport_errors(provider):
            while (chunk := await reader.read_chunk()) is not None:
                yield bytes(chunk)
    finally:
        await stream.close()


def raise_for_openai_error(provider: str, status: int, body: bytes, retry_after: str | None = None) -> None:
    """Raise the upstream's OpenAI-shaped error with its status, message and `Retry-After` header; return if the
    status is a success."""
    if status < 400:
        return
    error = _error_object(body)
    message = str(error.get("message") or f"Upstream provider {provider!r} answered HTTP {status}.")
    failure = UpstreamError(
        message, status=status, type=str(error.get("type") or "upstream_error"),
        code=_optional_str(error.get("code")), param=_optional_str(error.get("param")),
    )
    failure.keep_retry_after(retry_after)
    raise failure


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()[:500]
        return {"message": text} if text else {}
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return {}


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
