"""A service's HTTP client on plain http (services/h1.py behind `Service.send`) against raw loopback servers: the
same request on the wire and the same reply as pyreqwest's, keep-alive reuse, a pooled connection the server closed,
timeouts and refused connections as the gateway's 504/502, a reply released early, a large body read in pieces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from pyreqwest.exceptions import ReadTimeoutError

from sluice.errors import InvalidRequest, UpstreamTimeout, UpstreamUnreachable
from sluice.providers.passthrough import reply_headers
from sluice.providers.upstream import OpenStream, pooled_client
from sluice.services.options import ServiceConfig
from sluice.services.registry import Service
from sluice.telemetry.metrics import Metrics

pytestmark = pytest.mark.anyio
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

REPLIES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  1 \r\nX-A: 2\r\nConnection: keep-alive, X-B\r\nX-B: z\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 10\r\n\r\n",
]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    listening = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    finally:
        listening.close()


@asynccontextmanager
async def service(url: str, timeouts: dict[str, float] | None = None) -> AsyncIterator[Service]:
    config = ServiceConfig.model_validate({"instances": [{"url": url}], "timeout": timeouts or {}})
    svc = Service("svc", config, Metrics())
    await svc.start()
    try:
        yield svc
    finally:
        await svc.aclose()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + (await reader.readexactly(length) if length else b"")


async def test_the_same_request_on_the_wire_and_the_same_reply_as_pyreqwest() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        seen.append(request)
        writer.write(REPLIES[int(request.split(b" ")[1][1:2])])
        await writer.drain()
        writer.close()  # every reply on its own connection: the pooled one is found closed by the next call

    async with server(handler) as url, service(url) as svc:
        port = url.rsplit(":", 1)[1].encode()
        reference = pooled_client(10, 5, 60, raw=True, total_seconds=600)
        for index in range(len(REPLIES)):
            for method, body in (("GET", b""), ("POST", b"hello"), ("POST", b""), ("HEAD", b"")):
                if method == "HEAD" and index == 3:
                    continue
                headers = [("content-type", "x/y"), ("x-z", "1"), ("user-agent", "me")] if body else \
                    [("x-sluice-key-id", "k"), ("accept", "a/b")]
                target = f"{url}/{index}?b=1"
                builder = reference.request(method, target).headers(headers)
                if body:
                    builder = builder.body_bytes(body)
                request = builder.streamed_read_buffer_limit(0).build_streamed()
                replies: list[tuple[object, ...]] = []
                for reply in (OpenStream(request, await request.__aenter__()),
                              await svc.send(method, target, headers, body)):
                    replies.append((reply.status, list(reply.response.headers.items()), reply_headers(reply),
                                    reply.response.get_header("x-a"), await reply.read()))
                    await reply.close()
                assert replies[0] == replies[1], (index, method)
                assert seen[-2].replace(port, b"P") == seen[-1].replace(port, b"P"), (index, method)
        await reference.close()


async def test_keep_alive_connections_are_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            await writer.drain()

    async with server(handler) as url, service(url) as svc:
        for _ in range(5):
            reply = await svc.send("GET", url + "/", [], b"")
            assert (reply.status, await reply.read()) == (200, b"ok")
            await reply.close()
    assert connections == 1


async def test_a_reply_released_early_closes_its_connection_and_a_large_body_arrives_whole() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: read in pieces, the connection paused while unread
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async with server(handler) as url, service(url) as svc:
        reply = await svc.send("GET", url + "/", [], b"")
        first = await reply.response.body_reader.read_chunk()
        assert first and len(first) < len(body)
        await reply.close()
        reply = await svc.send("GET", url + "/", [], b"")
        assert await reply.read() == body
        await reply.close()
    assert connections == 2


async def test_timeouts_and_refused_connections_are_the_gateways_504_and_502() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with server(silent) as url, service(url, {"connect": 1, "read": 0.2}) as svc:
        with pytest.raises(UpstreamTimeout) as timed_out:
            await svc.send("GET", url + "/", [], b"")
        assert timed_out.value.status == 504
        with pytest.raises(UpstreamTimeout):  # a route's timeout_seconds, for the whole call
            await svc.send("GET", url + "/", [], b"", read_seconds=0.1)
    async with server(silent) as url:
        pass  # closed: nothing listens there any more
    async with service(url) as svc:
        with pytest.raises(UpstreamUnreachable) as refused:
            await svc.send("GET", url + "/", [], b"")
        assert refused.value.status == 502


async def test_a_chunked_reply_that_arrives_in_pieces_is_read_whole() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nT: 1\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for offset in range(0, len(reply), 3):  # three bytes at a time: every boundary falls inside a piece
            writer.write(reply[offset:offset + 3])
            await writer.drain()
            await asyncio.sleep(0.001)
        await reader.read()

    async with server(handler) as url, service(url) as svc:
        answer = await svc.send("GET", url + "/", [], b"")
        assert (answer.status, await answer.read()) == (200, b"hello world")
        await answer.close()


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    async with server(record) as url, service(url) as svc:
        for header in [("x-a", "b\r\nx-evil: 1"), ("x-a", "b\nx-evil: 1"), ("x-a", "b\rx")]:
            with pytest.raises(InvalidRequest) as refused:
                await svc.send("GET", url + "/", [header], b"")
            assert refused.value.status == 400
        with pytest.raises(InvalidRequest):
            await svc.send("GET", url + "/a\r\nx-evil: 1", [], b"")
        await asyncio.sleep(0.05)
    assert received == []


async def test_each_wait_times_out_after_its_own_read_timeout_on_a_pooled_connection() -> None:
    """One timer per connection watches its waits (services/h1.py `_Connection.watch`): a wait on a connection
    whose timer was set for an earlier call still times out a read timeout after it began, or at its own call's
    deadline when that is sooner; a body that stops midway too."""
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        try:
            while True:
                await read_request(reader)
                calls += 1
                if calls == 1:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif calls == 2:
                    await asyncio.sleep(0.05)  # the wait set the timer to 0.3 s from its start
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async with server(handler) as url, service(url, {"connect": 1, "read": 0.3}) as svc:
        loop = asyncio.get_running_loop()
        for _ in range(2):
            reply = await svc.send("GET", url + "/", [], b"")
            assert await reply.read() == b"ok"
            await reply.close()
        started = loop.time()  # the pooled connection's timer is still set for the second call's wait
        reply = await svc.send("GET", url + "/", [], b"", read_seconds=0.1)  # its body stops after 4 of 10 bytes
        assert await reply.response.body_reader.read_chunk() == b"half"
        with pytest.raises(ReadTimeoutError):
            await reply.response.body_reader.read_chunk()
        assert 0.09 <= loop.time() - started < 0.2
        await reply.close()
        reply = await svc.send("GET", url + "/", [], b"")
        assert await reply.response.body_reader.read_chunk() == b"half"
        started = loop.time()
        with pytest.raises(ReadTimeoutError):
            await reply.response.body_reader.read_chunk()
        assert 0.28 <= loop.time() - started < 0.6
        await reply.close()
        reply = await svc.send("GET", url + "/", [], b"", read_seconds=5)
        assert await reply.response.body_reader.read_chunk() == b"half"
        await reply.close()
        reply = await svc.send("GET", url + "/", [], b"", read_seconds=0.8)
        await reply.response.body_reader.read_chunk()
        started = loop.time()
        with pytest.raises(ReadTimeoutError):
            await reply.response.body_reader.read_chunk()
        assert 0.28 <= loop.time() - started < 0.6
        await reply.close()
