"""A worker's client connections that never sent a byte, shut down once older than the header read timeout.

granian (hyper) starts its header read timeout at a request's first byte, so a TCP connection that sends nothing
holds one of the worker's `SLUICE_MAX_CONCURRENCY` places for ever: twenty such connections kept a worker with 8
places from answering `/health` for over 80 s. A thread of the worker looks at the worker's own sockets every
second: an established connection on a port this process listens on (never an upstream connection), with no byte
received in its life (`TCP_INFO`: `tcpi_bytes_received` 0) for longer than the timeout (`tcpi_last_data_recv`,
which for such a connection counts from its start), is shut down; granian sees the client close it. A sweep reads
`/proc/self/fd` and one `getsockopt` per socket (~3 µs each).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading

logger = logging.getLogger("sluice.serve")

TIMEOUT_ENV = "SLUICE_IDLE_CONNECTION_SECONDS"
"""Where the supervisor tells its workers the timeout (`server.header_read_timeout_seconds`)."""
SWEEP_SECONDS = 1.0
_TCP_INFO_BYTES = 136
_ESTABLISHED, _LISTEN = 1, 10
_LAST_DATA_RECV, _BYTES_RECEIVED = 52, 128
"""Offsets in Linux's `struct tcp_info` of `tcpi_last_data_recv` (u32, ms) and `tcpi_bytes_received` (u64)."""


def _sockets() -> list[socket.socket]:
    """A duplicate of every TCP socket this process holds (closed by the caller)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            duplicate = os.dup(int(name))
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)
            continue
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            found.append(sock)
        else:
            sock.close()
    return found


def sweep(timeout_ms: int) -> int:
    """Shut down this process's silent client connections older than `timeout_ms`; how many."""
    sockets = _sockets()
    try:
        infos = []
        for sock in sockets:
            with contextlib.suppress(OSError):
                infos.append((sock, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)))
        listening = {sock.getsockname()[1] for sock, info in infos if info[0] == _LISTEN}
        closed = 0
        for sock, info in infos:
            if info[0] != _ESTABLISHED or len(info) < _BYTES_RECEIVED + 8:
                continue
            silent = struct.unpack_from("Q", info, _BYTES_RECEIVED)[0] == 0
            if silent and struct.unpack_from("I", info, _LAST_DATA_RECV)[0] > timeout_ms:
                with contextlib.suppress(OSError):
                    if sock.getsockname()[1] in listening:
                        sock.shutdown(socket.SHUT_RDWR)
                        closed += 1
        return closed
    finally:
        for sock in sockets:
            sock.close()


def start_from_env() -> threading.Thread | None:
    """The reaper thread of this worker, when the supervisor set a timeout; None otherwise."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return None
    timeout_ms = int(float(value) * 1000)

    def run() -> None:
        stop = threading.Event()
        while not stop.wait(SWEEP_SECONDS):
            try:
                closed = sweep(timeout_ms)
            except Exception:  # never let the reaper take the worker down
                logger.exception("idle connection sweep failed")
                continue
            if closed:
                logger.info("closed %d connections that sent nothing in %.1f s", closed, timeout_ms / 1000)

    thread = threading.Thread(target=run, name="sluice-idle-reaper", daemon=True)
    thread.start()
    return thread
