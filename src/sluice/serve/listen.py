"""The gateway's listening socket: bound once by `sluice serve`, so a port already in use is refused.

granian binds one SO_REUSEPORT socket per worker, which lets a second server join a port silently (the kernel
then splits connections between the two) and resets the connections queued on a worker's socket when that worker
stops. Sluice's supervisor binds one socket itself instead, shared by its workers and kept while they come and
go; SO_REUSEPORT only when asked for (`--reuse-port`).
"""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """The address cannot be listened on; the message is one line for the operator."""


def listen_socket(host: str, port: int, backlog: int, *, reuse_port: bool = False, shareable: bool = True
                  ) -> socket.socket:
    """A TCP socket listening on host:port (IPv4 or IPv6), inheritable by the workers."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {shown}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Inherited by every accepted connection: without it a reply written in more than one piece (a relayed
        # stream, a chunked body's last chunk) waits for the client's delayed ACK, 40 ms on Linux, each time.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            share = ", or pass --reuse-port to both to share it on purpose" if shareable else ""
            raise ListenError(f"cannot listen on {shown}: address already in use (another server has this port: "
                              f"stop it or choose another --port{share})") from None
        raise ListenError(f"cannot listen on {shown}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def check_free(host: str, port: int) -> None:
    """Raise ListenError if host:port cannot be bound now (for servers that bind it themselves, e.g. uvicorn)."""
    listen_socket(host, port, 1, shareable=False).close()
