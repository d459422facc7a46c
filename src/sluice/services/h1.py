"""A lean HTTP/1.1 client on the event loop for service instances on plain `http://`, with a request body in hand.

Why not pyreqwest here: measured in process (/tmp-style micro-benchmark, 32 GETs at once to the nginx benchmark
upstream, CPU per call): pyreqwest 39 µs, aiohttp 64 µs, an asyncio Protocol client like this one ~10 µs, while a
whole service GET cost ~85 µs against the Python floor's ~60 (issue 16). pyreqwest's I/O runs on its own Tokio
thread, so each call wakes threads back and forth; for a small proxied request that is most of the cost. LLM calls
(long, streamed, TLS) keep pyreqwest, and so do service instances on https, requests whose body is streamed and
processes with a proxy in their environment (registry.py and providers/passthrough.py pick).

What it keeps of pyreqwest's behaviour (services/registry.py's `send` through either gives the same request on the
wire and the same reply): header names sent title-cased, `Accept: */*` and pyreqwest's `User-Agent` when the caller
sent none, `Host` from the URL, `Content-Length` for a body; replies with `Content-Length`, chunked or
close-delimited bodies, none for HEAD/1xx/204/304; header names read lower-case; keep-alive connections pooled per
instance (at most `IDLE_PER_HOST` idle, dropped after `IDLE_SECONDS`), a request on a pooled connection the server
had closed sent again on a new one; `max_connections` calls at once; the connect, read (between bytes) and whole-call
timeouts; failures raised as pyreqwest's own exceptions (ConnectError, ConnectTimeoutError, ReadTimeoutError,
ReadError), so every caller maps them as before; a reply released early closes its connection."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Generator
from typing import Any, cast

from pyreqwest.exceptions import (
    CauseErrorDetails,
    ConnectError,
    ConnectTimeoutError,
    ReadError,
    ReadTimeoutError,
    RequestError,
)
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from sluice.errors import InvalidRequest
from sluice.providers.upstream import POOL_MAX_IDLE_PER_HOST, OpenStream, transport_error

IDLE_PER_HOST = POOL_MAX_IDLE_PER_HOST
IDLE_SECONDS = 90.0
"""reqwest's idle keep-alive timeout."""
USER_AGENT = "python-pyreqwest/1.0.0"
"""What pyreqwest sends when the caller sent no User-Agent: services see the same requests from either client."""
MAX_HEAD = 64 * 1024
PAUSE_AT = 256 * 1024
"""Reply bytes read ahead of the caller before the connection stops reading."""
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
"""Set, reqwest sends plain-http requests through that proxy: then every call goes through pyreqwest."""
CLOCK_SLACK = 0.001
"""How early a timer may run (the event loop runs those due within its clock's resolution): a wait whose end is
nearer than this when its connection's timer runs has timed out."""
SPACE = bytes(code for code in range(256) if chr(code).isspace())
"""What `str.strip()` strips from a header value read as latin-1: a value is trimmed of these, as bytes."""
_NO_DETAILS: CauseErrorDetails = {"causes": None}
_TITLES: dict[str, str] = {}

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


def usable() -> bool:
    """Whether plain-http calls may use this client: no proxy in the environment (which only reqwest honours)."""
    return not any(os.environ.get(name) for name in PROXY_VARIABLES)


def lower(name: bytes) -> bytes:
    """`name` lower-cased as its latin-1 text would be (`bytes.lower` leaves non-ASCII letters as they are)."""
    return name.lower() if name.isascii() else name.decode("latin-1").lower().encode("latin-1")


def _title(name: str) -> str:
    """`x-request-id` as hyper writes it with title-case headers: `X-Request-Id`."""
    title = _TITLES.get(name)
    if title is None:
        title = "-".join(part[:1].upper() + part[1:] for part in name.lower().split("-"))
        if len(_TITLES) < 4096:
            _TITLES[name] = title
    return title


class _Stale(ReadError):
    """A pooled connection closed by the server before any byte of the reply: the request is sent again."""


class Reply:
    """One call's reply: its status and headers, then its body as it arrives. Used as both halves of an
    `OpenStream` (the request, whose `__aexit__` releases it, and the response)."""

    __slots__ = ("status", "chunks", "done", "error", "waiter", "connection", "pool", "deadline",
                 "read_seconds", "buffered", "body_reader", "loop", "expiry", "raw_headers", "_headers")

    def __init__(self, pool: H1Client, loop: asyncio.AbstractEventLoop, deadline: float, read_seconds: float
                 ) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        """The reply's headers as read: names lower-case, values trimmed (`SPACE`), as ASGI pairs."""
        self._headers: _Headers | None = None
        self.chunks: deque[bytes] = deque()
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.connection: _Connection | None = None
        self.pool: H1Client | None = pool
        self.deadline = deadline
        self.read_seconds = read_seconds
        self.buffered = 0
        self.body_reader = self
        self.loop = loop
        self.expiry = 0.0
        """When the current wait times out: the read timeout after its start, or the call's deadline."""

    @property
    def headers(self) -> _Headers:
        """The headers as pyreqwest's header map gives them (`items()`: str pairs, in order)."""
        found = self._headers
        if found is None:
            found = self._headers = _Headers((name.decode("latin-1"), value.decode("latin-1"))
                                             for name, value in self.raw_headers)
        return found

    def get_header(self, name: str) -> str | None:
        """The first value of header `name` (lower-case), as pyreqwest's `get_header`."""
        key = name.encode("latin-1")
        for found, value in self.raw_headers:
            if found == key:
                return value.decode("latin-1")
        return None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wait(self) -> _News:
        """Until the connection has news for this reply, within the read timeout and the call's deadline."""
        return _News(self)

    def timed_out(self) -> None:
        if self.error is None and not self.done:
            self.error = ReadTimeoutError("the upstream sent nothing within the timeout", _NO_DETAILS)
            if self.connection is not None:
                self.connection.abort()
            self.wake()

    async def read_chunk(self) -> bytes | None:
        """The next piece of the body, None at its end (when the connection goes back to the pool)."""
        while True:
            chunks = self.chunks
            if chunks:
                chunk = chunks.popleft()
                self.buffered -= len(chunk)
                connection = self.connection
                if connection is not None and connection.paused and self.buffered < PAUSE_AT:
                    connection.resume()
                return chunk
            if self.done:
                self._release()
                return None
            if self.error is not None:
                raise self.error
            await self.wait()

    async def bytes(self) -> bytes:
        """The whole (rest of the) body."""
        parts = []
        while (chunk := await self.read_chunk()) is not None:
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def __aexit__(self, *_: object) -> None:
        """Released: a body not read to its end closes the connection (its rest would be read by the next call)."""
        if not self.done and self.connection is not None:
            self.connection.abort()
            self.connection = None
        self._release()

    def _release(self) -> None:
        pool = self.pool
        if pool is not None:
            self.pool = None
            pool.finished()


class _News:
    """The wait of `Reply.wait`. Not a plain `await future`: relayed.py polls a body read once by hand and then
    leaves it to a task, which resumes it before the future is done (pyreqwest's reads allow that; so does this).
    Its timeout is watched by its connection's timer (`_Connection.watch`), not a timer of its own: a timer made
    and cancelled cost ~4 µs a wait under uvloop."""

    __slots__ = ("reply",)

    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def __await__(self) -> Generator[Any, None, None]:
        reply = self.reply
        loop = reply.loop
        waiter = reply.waiter = loop.create_future()
        expiry = reply.expiry = min(loop.time() + reply.read_seconds, reply.deadline)
        connection = reply.connection
        own = loop.call_at(expiry, reply.timed_out) if connection is None else None
        if connection is not None:
            connection.watch(expiry)
        try:
            while not waiter.done():
                waiter._asyncio_future_blocking = True
                yield waiter
            waiter.result()
        finally:
            if own is not None:
                own.cancel()
            reply.waiter = None


class _Headers(list[tuple[str, str]]):
    """Reply headers in order, lower-case names; `items()` as pyreqwest's header map."""

    def items(self) -> _Headers:
        return self


class _Connection(asyncio.Protocol):
    """One keep-alive connection to one instance, and the parser of the reply it is reading."""

    def __init__(self, client: H1Client, key: tuple[str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.key = key
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.buffer = b""
        self.state = _DONE
        self.left = 0
        self.no_body = False
        self.keep_alive = True
        self.received = False
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def start(self, reply: Reply, head: bytes, no_body: bool) -> None:
        self.reply = reply
        reply.connection = self
        self.state = _HEAD
        self.buffer = b""
        self.received = False
        self.no_body = no_body
        assert self.transport is not None
        self.transport.write(head)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def watch(self, expiry: float) -> None:
        """Time out the reply's wait at `expiry` unless news comes: one timer for the connection, made again only
        when it would run later than that (each wait's end moves later, so it is made about once per read
        timeout, not once per wait)."""
        timer = self.timer
        if timer is None or self.timer_at > expiry:
            if timer is not None:
                timer.cancel()
            self.timer_at = expiry
            self.timer = self.loop.call_at(expiry, self._tick)

    def _tick(self) -> None:
        """The timer ran: the reply waiting past its wait's end times out; a later end is watched again."""
        self.timer = None
        reply = self.reply
        if reply is None or reply.waiter is None:
            return
        if reply.expiry - CLOCK_SLACK <= self.loop.time():
            reply.timed_out()
        else:
            self.watch(reply.expiry)

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        reply = self.reply
        if reply is None:  # nothing was asked: a server talking out of turn is not to be trusted with the next call
            self.abort()
            return
        self.received = True
        self.buffer = self.buffer + data if self.buffer else data
        try:
            self._parse(reply)
        except ValueError:
            reply.error = ReadError("the upstream's reply is not valid HTTP/1.1", _NO_DETAILS)
            self.abort()
        reply.wake()
        if reply.buffered >= PAUSE_AT and not self.paused and self.state != _DONE and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _parse(self, reply: Reply) -> None:
        buffer = self.buffer
        while True:
            state = self.state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ValueError("head too large")
                    break
                head = buffer[:end]
                buffer = buffer[end + 4:]
                self._head(reply, head)
            elif state == _LENGTH:
                if not buffer:
                    break
                piece = buffer[:self.left]
                buffer = buffer[len(piece):]
                self.left -= len(piece)
                self._body(reply, piece)
                if not self.left:
                    self._end(reply)
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ValueError("chunk size line too long")
                    break
                size = int(buffer[:end].split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                buffer = buffer[end + 2:]
                if size and buffer[size:size + 2] == b"\r\n":  # the whole chunk is here (nearly always)
                    self._body(reply, buffer[:size])
                    buffer = buffer[size + 2:]
                    continue
                self.left = size
                self.state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                if not buffer:
                    break
                piece = buffer[:self.left]
                buffer = buffer[len(piece):]
                self.left -= len(piece)
                self._body(reply, piece)
                if not self.left:
                    self.state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buffer) < 2:
                    break
                if buffer[:2] != b"\r\n":
                    raise ValueError("chunk not ended by CRLF")
                buffer = buffer[2:]
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buffer[:2] == b"\r\n":
                    buffer = buffer[2:]
                    self._end(reply)
                    continue
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ValueError("trailers too large")
                    break
                buffer = buffer[end + 4:]
                self._end(reply)
            elif state == _UNTIL_CLOSE:
                if buffer:
                    self._body(reply, buffer)
                    buffer = b""
                break
            else:
                if buffer:  # bytes past the reply's end: the connection cannot be trusted again
                    self.abort()
                    buffer = b""
                break
        self.buffer = buffer

    def _head(self, reply: Reply, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1 reply")
        status = int(rest[:3])
        if 100 <= status < 200 and status != 101:
            return  # an interim reply (100 Continue, 103 Early Hints): the real one follows
        headers = reply.raw_headers
        length: bytes | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError("header line without a colon")
            name = name.lower() if name.isascii() else lower(name)
            value = value.strip(SPACE)
            headers.append((name, value))
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif name == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        reply.status = status
        self.keep_alive = keep_alive and status != 101
        if self.no_body or status in (204, 304):
            self._end(reply)
        elif chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            if not length.isdigit():
                raise ValueError("bad Content-Length")
            self.left = int(length)
            self.state = _LENGTH
            if not self.left:
                self._end(reply)
        else:
            self.keep_alive = False
            self.state = _UNTIL_CLOSE

    def _body(self, reply: Reply, piece: bytes) -> None:
        if piece:
            reply.chunks.append(piece)
            reply.buffered += len(piece)

    def _end(self, reply: Reply) -> None:
        """The reply is complete: its connection goes back to the pool (or is closed)."""
        self.state = _DONE
        reply.done = True
        reply.connection = None
        self.reply = None
        if self.paused:
            self.resume()
        self.client.idle(self)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        reply = self.reply
        if reply is None:
            return
        self.reply = None
        reply.connection = None
        if self.state == _UNTIL_CLOSE and exc is None:
            self.state = _DONE
            reply.done = True
        elif reply.error is None:
            if reply.status == 0 and not self.received:
                reply.error = _Stale("the connection was closed before the reply", _NO_DETAILS)
            else:
                reply.error = ReadError("the connection was closed before the reply was complete", _NO_DETAILS)
        reply.wake()


class H1Client:
    """Pooled keep-alive connections to the instances of one service; `send` as pyreqwest's streamed request."""

    def __init__(self, max_connections: int, connect_seconds: float, read_seconds: float,
                 total_seconds: float | None) -> None:
        self.max_connections = max_connections
        self.connect_seconds = connect_seconds
        self.read_seconds = read_seconds
        self.total_seconds = total_seconds
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._origins: dict[str, tuple[str, int, str]] = {}
        self._busy = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop of its first call, which its connections live on (`get_running_loop` is ~0.5 µs)."""

    async def send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                   read_seconds: float | None, upstream: str) -> OpenStream:
        """The reply once its head arrived (`url`: http://host[:port]/path?query; `read_seconds`, when given,
        bounds the whole call instead of the client's total timeout); failures before it as `upstream`'s
        UpstreamTimeout / UpstreamUnreachable (providers/upstream.py `transport_error`)."""
        host, port, host_header, target = self._split(url)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        whole = read_seconds if read_seconds is not None else self.total_seconds
        deadline = loop.time() + whole if whole is not None else float("inf")
        parts = [f"{method} {target} HTTP/1.1\r\n"]
        has_accept = has_agent = has_host = False
        titles = _TITLES
        for name, value in headers:
            title = titles.get(name)
            if title is None:
                title = _title(name)
            parts.append(f"{title}: {value}\r\n")
            if title == "Accept":
                has_accept = True
            elif title == "User-Agent":
                has_agent = True
            elif title == "Host":
                has_host = True
        if not has_accept:
            parts.append("Accept: */*\r\n")
        if not has_agent:
            parts.append(f"User-Agent: {USER_AGENT}\r\n")
        if not has_host:
            parts.append(f"Host: {host_header}\r\n")
        if body:
            parts.append(f"Content-Length: {len(body)}\r\n")
        parts.append("\r\n")
        text = "".join(parts)
        if text.count("\n") != len(parts) or text.count("\r") != len(parts):
            # each part ends with the one CRLF: any other line break (a route's header value, a rewritten path)
            # would split the request on the wire; pyreqwest refuses such a header too
            raise InvalidRequest("A header or the path sent upstream holds a line break.")
        head = text.encode("latin-1")
        if body:
            head += body
        try:
            await self._admit()
        except RequestError as exc:
            raise transport_error(exc, upstream) from exc
        reply = Reply(self, loop, deadline, self.read_seconds)
        try:
            while True:
                connection, reused = await self._connection((host, port), loop, deadline)
                connection.start(reply, head, method == "HEAD")
                try:
                    while reply.status == 0 and not reply.done:
                        if reply.error is not None:
                            raise reply.error
                        await reply.wait()
                except _Stale:
                    if reused:  # the server closed it while it was idle: a new connection, once per pooled one
                        reply.error = None
                        continue
                    raise ReadError("the connection was closed before the reply", _NO_DETAILS) from None
                break
        except RequestError as exc:
            await reply.__aexit__()
            raise transport_error(exc, upstream) from exc
        except BaseException:
            await reply.__aexit__()
            raise
        return OpenStream(cast(StreamRequest, reply), cast(Response, reply))

    def _split(self, url: str) -> tuple[str, int, str, str]:
        slash = url.find("/", 7)
        origin, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        found = self._origins.get(origin)
        if found is None:
            authority = origin[7:]
            host, colon, port = authority.rpartition(":")
            if not colon or "]" in port:
                host, port = authority, "80"
            found = (host.strip("[]"), int(port), authority if port != "80" else host)
            self._origins[origin] = found
        return found[0], found[1], found[2], target

    async def _admit(self) -> None:
        """A slot among `max_connections` calls at once (waiting for one when all are taken)."""
        if self._closed:
            raise ConnectError("the client is closed", _NO_DETAILS)
        while self._busy >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif not waiter.cancelled():
                    self._wake_next()
                raise
        self._busy += 1

    def finished(self) -> None:
        self._busy -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connection(self, key: tuple[str, int], loop: asyncio.AbstractEventLoop, deadline: float
                          ) -> tuple[_Connection, bool]:
        """An idle pooled connection to `key` (reused: True), else a new one within the connect timeout."""
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection, True
            connection.abort()
        connection = _Connection(self, key, loop)
        timeout = min(self.connect_seconds, max(0.0, deadline - loop.time()))
        try:
            await asyncio.wait_for(loop.create_connection(lambda: connection, key[0], key[1]), timeout)
        except TimeoutError:
            raise ConnectTimeoutError("connecting timed out", _NO_DETAILS) from None
        except OSError as exc:
            raise ConnectError(f"could not connect: {exc}", _NO_DETAILS) from None
        return connection, False

    def idle(self, connection: _Connection) -> None:
        """`connection` finished a reply: pooled again if it can carry another."""
        if connection.closed:
            return
        if not connection.keep_alive or self._closed:
            connection.abort()
            return
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= IDLE_PER_HOST:
            connection.abort()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()

