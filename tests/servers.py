"""Run an ASGI app on a real loopback port in a background thread, for tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadedServer(uvicorn.Server):
    """A uvicorn server that does not install signal handlers, so it can live in a thread."""

    def install_signal_handlers(self) -> None:
        pass


@contextlib.contextmanager
def serve(app: Any, *, port: int | None = None, lifespan: Literal["auto", "on", "off"] = "on",
          timeout: float = 10.0, tls: dict[str, Any] | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 and yield its base URL (``http://127.0.0.1:PORT``, ``https://`` with `tls`:
    uvicorn's `ssl_*` options); stop it on exit."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, log_level="warning", loop="asyncio",
        timeout_graceful_shutdown=2, **(tls or {}),
    )
    server = ThreadedServer(config)
    thread = threading.Thread(target=server.run, name=f"test-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
