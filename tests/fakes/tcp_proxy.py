"""A loopback TCP forwarder that can be taken down and brought back on the same port (a database "outage")."""

from __future__ import annotations

import asyncio
import contextlib

from tests.servers import free_port


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `down()` refuses and cuts every connection, `up()` listens again,
    `hang()` accepts connections and never answers."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.hanging = False

    async def up(self, *, hanging: bool = False) -> None:
        self.hanging = hanging
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def hang(self) -> None:
        """Cut the open connections and accept new ones without ever answering (a database that stalls)."""
        await self.down()
        await self.up(hanging=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.hanging:
            self._writers.add(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        self._writers.difference_update((writer, upstream_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
