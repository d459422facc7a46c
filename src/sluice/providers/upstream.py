"""The pooled HTTP client one provider uses, and the one map from transport failures to gateway errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import aiohttp
import orjson

from sluice.config import Timeouts
from sluice.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnreachable


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Turn aiohttp and timeout errors into UpstreamTimeout / UpstreamUnreachable."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
        raise UpstreamTimeout(f"Upstream provider {provider!r} timed out.") from exc
    except aiohttp.ClientError as exc:
        reason = type(exc).__name__
        raise UpstreamUnreachable(f"Upstream provider {provider!r} could not be reached: {reason}.") from exc


class UpstreamClient:
    """One pooled aiohttp session for one provider, opened at start-up and closed at shutdown."""

    def __init__(self, provider: str, base_url: str, headers: Mapping[str, str], timeout: Timeouts,
                 max_connections: int) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **headers}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect, sock_read=timeout.read)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=True,
            skip_auto_headers=("User-Agent",), json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise GatewayError(f"Provider {self.provider!r} is not started.")
        return self._session

    async def post(self, path: str, body: bytes, headers: dict[str, str], params: Mapping[str, str] | None = None
                   ) -> tuple[int, bytes]:
        """POST and read the whole reply."""
        with map_transport_errors(self.provider):
            async with self.session.post(self.base_url + path, data=body, headers=self.headers | headers,
                                         params=params) as reply:
                return reply.status, await reply.read()

    async def open(self, path: str, body: bytes, headers: dict[str, str], params: Mapping[str, str] | None = None
                   ) -> aiohttp.ClientResponse:
        """POST and return the reply once its headers arrived; the body is read by the caller."""
        with map_transport_errors(self.provider):
            return await self.session.post(self.base_url + path, data=body, headers=self.headers | headers,
                                           params=params)

    async def relay(self, reply: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        """Yield the reply's body as it arrives; closing the iterator early aborts the upstream request."""
        finished = False
        try:
            with map_transport_errors(self.provider):
                async for data in reply.content.iter_any():
                    yield data
            finished = True
        finally:
            if finished:
                reply.release()
            else:
                reply.close()


def raise_for_openai_error(provider: str, status: int, body: bytes) -> None:
    """Raise the upstream's OpenAI-shaped error with its status and message; return if the status is a success."""
    if status < 400:
        return
    error = _error_object(body)
    message = str(error.get("message") or f"Upstream provider {provider!r} answered HTTP {status}.")
    raise UpstreamError(
        message, status=status, type=str(error.get("type") or "upstream_error"),
        code=_optional_str(error.get("code")), param=_optional_str(error.get("param")),
    )


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


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task and wait for it, ignoring its outcome."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
