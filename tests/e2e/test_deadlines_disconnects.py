"""Deadlines and callers that leave, under `sluice serve` (granian) against an upstream that trickles: a caller that
hangs up while the gateway waits on the upstream (a complete answer, a stream, a service reply) has the upstream
call cancelled within a second and its request-log row says so (499 when nothing was sent, the stream's 200
otherwise, `client_disconnected` true); `timeout.total` bounds a whole call that keeps trickling (a 504 before
the first byte, an error event after it)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve import run_serve
from tests.servers import free_port

ADMIN = "sk-admin-deadlines"
HEADERS = {"Authorization": "Bearer sk-e2e"}


class Trickler:
    """A loopback upstream that answers every request with a 200 whose body never ends: a JSON body declared
    long (`/v1/chat/completions` without `stream`, `/svc/…`) or SSE events (`stream: true`), one piece every
    0.2 s. It notes when each connection's request arrived and when the gateway closed it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.opened: list[tuple[str, float]] = []
        self.closed: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = connection.recv(65536)
                if not piece:
                    return
                head += piece
            headers, _, body = head.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += connection.recv(65536)
            path = headers.split(b" ", 2)[1].decode()
            with self._lock:
                self.opened.append((path, time.monotonic()))
            streamed = b'"stream":true' in body.replace(b" ", b"")
            try:
                if streamed:
                    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                       b"transfer-encoding: chunked\r\n\r\n")
                    event = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",' \
                            b'"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
                    piece = f"{len(event):x}\r\n".encode() + event + b"\r\n"
                else:
                    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                       b"content-length: 100000\r\n\r\n{")
                    piece = b" "
                while True:
                    connection.sendall(piece)
                    time.sleep(0.2)
            except OSError:
                with self._lock:
                    self.closed.append((path, time.monotonic()))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Trickler]:
    trickler = Trickler()
    yield trickler
    trickler.close()


@pytest.fixture(scope="module")
def gateway(upstream: Trickler, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = f"http://127.0.0.1:{upstream.port}"
    config = f"""
providers:
  slow: {{type: openai, base_url: "{base}/v1", api_key: upstream-key, retries: {{attempts: 0}}}}
  bounded: {{type: openai, base_url: "{base}/v1", api_key: upstream-key, retries: {{attempts: 0}},
            timeout: {{total: 1.5}}}}
models:
  - {{name: slow, provider: slow, model: m}}
  - {{name: bounded, provider: bounded, model: m}}
services:
  trickle: {{instances: [{{url: "{base}"}}], retries: {{attempts: 0}}}}
routes:
  - {{path: "/svc/**", service: trickle, auth: key}}
discover_projects: false
"""
    with run_serve(config, tmp_path_factory.mktemp("deadlines"), {"SLUICE_ADMIN_KEY": ADMIN}) as (url, _):
        yield url


def _hang_up_after(port: int, path: str, body: dict[str, Any], seconds: float, *, first_bytes: bool = False
                   ) -> tuple[float, bytes]:
    """Send a POST from a raw socket, wait `seconds` (or for the reply's first bytes), then close; the time it
    closed and what it had received."""
    raw = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(seconds + 5)
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-e2e\r\n"
                 f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n".encode() + raw)
    received = b""
    if first_bytes:
        while b"data:" not in received:
            received += sock.recv(65536)
    else:
        time.sleep(seconds)
    left = time.monotonic()
    sock.close()
    return left, received


def _closed_after(upstream: Trickler, path: str, opened_before: int, left: float) -> float:
    """How long after the caller left the gateway closed its upstream connection for `path`."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        closes = [at for name, at in upstream.closed if name == path and at > left - 5]
        if len([name for name, _ in upstream.opened if name == path]) > opened_before and closes:
            return max(closes) - left
        time.sleep(0.05)
    pytest.fail(f"the upstream connection for {path} was still open 5 s after the caller left")


def _row(gateway: str, path: str, since: float) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = httpx.get(gateway + "/admin/logs", params={"limit": 50},
                          headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        rows = [row for row in reply.json()["data"] if row["endpoint"] == path
                and row["timestamp_utc"] >= since_iso(since)]
        if rows:
            return rows[0]  # type: ignore[no-any-return]
        time.sleep(0.2)
    pytest.fail(f"no request-log row for {path}")


def since_iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def test_a_caller_leaving_a_complete_answer_cancels_the_upstream_and_is_logged_499(
        gateway: str, upstream: Trickler) -> None:
    port = int(gateway.rsplit(":", 1)[1])
    started = time.time() - 1
    before = len([name for name, _ in upstream.opened if name == "/v1/chat/completions"])
    left, _ = _hang_up_after(port, "/v1/chat/completions",
                             {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}, 0.8)
    assert _closed_after(upstream, "/v1/chat/completions", before, left) < 1.5
    row = _row(gateway, "/v1/chat/completions", started)
    assert row["response"]["status_code"] == 499
    assert row["metadata"]["client_disconnected"] is True
    # The gateway keeps serving, and a caller that stays still gets its answer.
    assert httpx.get(gateway + "/health", timeout=5).status_code == 200


def test_a_caller_leaving_a_stream_cancels_the_upstream_and_keeps_the_streams_200(
        gateway: str, upstream: Trickler) -> None:
    port = int(gateway.rsplit(":", 1)[1])
    started = time.time() - 1
    before = len([name for name, _ in upstream.opened if name == "/v1/chat/completions"])
    left, received = _hang_up_after(port, "/v1/chat/completions",
                                    {"model": "slow", "stream": True,
                                     "messages": [{"role": "user", "content": "hi"}]}, 5, first_bytes=True)
    assert received.startswith(b"HTTP/1.1 200")
    assert _closed_after(upstream, "/v1/chat/completions", before, left) < 1.5
    deadline = time.monotonic() + 10
    while True:
        row = _row(gateway, "/v1/chat/completions", started)
        if row["stream"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row["stream"] is True
    assert row["response"]["status_code"] == 200
    assert row["metadata"]["client_disconnected"] is True


def test_a_caller_leaving_a_service_reply_cancels_the_upstream(gateway: str, upstream: Trickler) -> None:
    port = int(gateway.rsplit(":", 1)[1])
    started = time.time() - 1
    before = len([name for name, _ in upstream.opened if name == "/svc/orders"])
    left, _ = _hang_up_after(port, "/svc/orders", {"item": 1}, 0.8)
    # The service answered its headers at once: the reply is being relayed, so the watch is the relay's.
    assert _closed_after(upstream, "/svc/orders", before, left) < 1.5
    row = _row(gateway, "/svc/orders", started)
    assert row["metadata"]["client_disconnected"] is True


def test_a_total_deadline_bounds_a_complete_answer_with_a_504(gateway: str) -> None:
    started = time.monotonic()
    reply = httpx.post(gateway + "/v1/chat/completions", headers=HEADERS, timeout=30,
                       json={"model": "bounded", "messages": [{"role": "user", "content": "hi"}]})
    took = time.monotonic() - started
    assert reply.status_code == 504, reply.text
    assert reply.json()["error"]["type"]
    assert 1.4 < took < 4.0


def test_a_total_deadline_ends_a_stream_with_an_error_event(gateway: str) -> None:
    started = time.monotonic()
    events: list[str] = []
    with httpx.stream("POST", gateway + "/v1/chat/completions", headers=HEADERS, timeout=30,
                      json={"model": "bounded", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as reply:
        assert reply.status_code == 200
        events = [line for line in reply.iter_lines() if line.startswith("data:")]
    took = time.monotonic() - started
    assert 1.4 < took < 4.0
    assert len(events) >= 3  # the deltas that came in time were relayed
    last = json.loads(events[-1].removeprefix("data:").strip())
    assert "error" in last, events[-1]
