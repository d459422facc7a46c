"""A worker's client connections that hold its places without a request: silent ones past the header read timeout,
and pending ones past the budget.

granian (hyper) starts its header read timeout at a request's first byte, so a TCP connection that sends nothing
holds one of the worker's `SLUICE_MAX_CONCURRENCY` places for ever: twenty such connections kept a worker with 8
places from answering `/health` for over 80 s. A thread of the worker looks at the worker's own sockets every
second: an established connection on a port this process listens on (never an upstream connection), with no byte
received in its life (`TCP_INFO`: `tcpi_bytes_received` 0) for longer than the timeout (`tcpi_last_data_recv`,
which for such a connection counts from its start), is shut down; granian sees the client close it. A sweep reads
`/proc/self/fd` and one `getsockopt` per socket (~3 µs each).

The same sweep keeps the budget of pending connections (`server.max_pending_connections`, a quarter of the places
by default): connections that have had no request in the app yet and were never sent a byte (no caller has been
authenticated on them), silent or trickling their headers. Past the budget the oldest are shut down, so however
many such connections a client opens, the rest of the places stay free for `/health` and for callers whose requests
arrive whole. The worker's app tells the sweep which peers have a request in it (`in_app`, serve/drain.py). A
keep-alive connection that was answered once is not pending: its next request's headers are bounded by the header
read timeout alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from typing import Any

logger = logging.getLogger("sluice.serve")

TIMEOUT_ENV = "SLUICE_IDLE_CONNECTION_SECONDS"
"""Where the supervisor tells its workers the timeout (`server.header_read_timeout_seconds`)."""
PENDING_ENV = "SLUICE_PENDING_CONNECTIONS"
"""Where it tells them the budget of pending connections (`server.max_pending_connections`)."""
SWEEP_SECONDS = 0.5
PENDING_GRACE_SECONDS = 1.0
"""How long a connection is pending before the budget counts it: a request granian has read waits for the event
loop to start it (under a burst, a worker starts a thousand within ~0.1 s), and must not be taken for one that
never arrives."""
_TCP_INFO_BYTES = 136
_ESTABLISHED, _LISTEN = 1, 10
_UNACKED, _LAST_DATA_RECV, _BYTES_ACKED, _BYTES_RECEIVED = 24, 52, 120, 128
"""Offsets in Linux's `struct tcp_info` of `tcpi_unacked` (u32, segments), `tcpi_last_data_recv` (u32, ms),
`tcpi_bytes_acked` and `tcpi_bytes_received` (u64)."""


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


class Reaper:
    """One worker's sweeps: what it closed, and since when each pending connection has been seen."""

    def __init__(self, timeout_ms: int, budget: int | None, in_app: set[Any]) -> None:
        self.timeout_ms = timeout_ms
        self.budget = budget
        self.in_app = in_app
        self.first_seen: dict[Any, float] = {}

    def sweep(self) -> tuple[int, int]:
        """Shut down this process's silent client connections older than the timeout, and its oldest pending ones
        past the budget; how many of each."""
        sockets = _sockets()
        try:
            infos = []
            for sock in sockets:
                with contextlib.suppress(OSError):
                    infos.append((sock, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)))
            listening = {sock.getsockname()[1] for sock, info in infos if info[0] == _LISTEN}
            silent_closed = 0
            pending: list[tuple[float, socket.socket]] = []
            in_app = frozenset(self.in_app)
            now = time.monotonic()
            seen: dict[Any, float] = {}
            for sock, info in infos:
                if info[0] != _ESTABLISHED or len(info) < _BYTES_RECEIVED + 8:
                    continue
                try:
                    if sock.getsockname()[1] not in listening:
                        continue  # an upstream connection
                    peer = sock.getpeername()[:2]
                except OSError:
                    continue
                received = struct.unpack_from("Q", info, _BYTES_RECEIVED)[0]
                if received == 0 and struct.unpack_from("I", info, _LAST_DATA_RECV)[0] > self.timeout_ms:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                        silent_closed += 1
                    continue
                answered = (struct.unpack_from("Q", info, _BYTES_ACKED)[0] > 0
                            or struct.unpack_from("I", info, _UNACKED)[0] > 0)
                # granian's scope names the port as a string, getpeername as an int
                if self.budget is None or answered or peer in in_app or (peer[0], str(peer[1])) in in_app:
                    continue
                seen[peer] = since = self.first_seen.get(peer, now)
                if now - since >= PENDING_GRACE_SECONDS:  # a request just accepted may not be in the app yet
                    pending.append((since, sock))
            self.first_seen = seen
            over = len(pending) - (self.budget or 0)
            pending_closed = 0
            if self.budget is not None and over > 0:
                pending.sort(key=lambda entry: entry[0])
                for _, sock in pending[:over]:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                        pending_closed += 1
            return silent_closed, pending_closed
        finally:
            for sock in sockets:
                sock.close()


def start_from_env(in_app: set[Any]) -> threading.Thread | None:
    """The reaper thread of this worker, when the supervisor set a timeout; None otherwise. `in_app`: the peers
    whose requests the app is serving (serve/drain.py `Draining` keeps it)."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return None
    budget_value = os.environ.get(PENDING_ENV)
    reaper = Reaper(int(float(value) * 1000), int(budget_value) if budget_value else None, in_app)

    def run() -> None:
        stop = threading.Event()
        while not stop.wait(SWEEP_SECONDS):
            try:
                silent, pending = reaper.sweep()
            except Exception:  # never let the reaper take the worker down
                logger.exception("idle connection sweep failed")
                continue
            if silent:
                logger.info("closed %d connections that sent nothing in %.1f s", silent, reaper.timeout_ms / 1000)
            if pending:
                logger.warning("closed %d connections without a request past the budget of %d pending connections "
                               "(server.max_pending_connections)", pending, reaper.budget)

    thread = threading.Thread(target=run, name="sluice-idle-reaper", daemon=True)
    thread.start()
    return thread
