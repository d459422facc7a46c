"""Request bodies under `sluice serve` (granian), from raw sockets: an unauthenticated caller gets its 401 before any
of its body is read (the worker's memory does not grow), `limits.max_body_bytes` holds on the FastAPI routes, and
a body that trickles in or never comes gets a 408 within `limits.body_read_timeout_seconds`, then the connection
is closed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve import run_serve, worker_pids

ADMIN = "sk-admin-e2e"
CONFIG = """
providers:
  mock: {type: mock}
  elsewhere: {type: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: demo, module: sluice.projects.demo}
discover_projects: false
limits: {body_read_timeout_seconds: 1, max_body_bytes: 65536}
"""
HUNDRED_MB = 100 * 1024 * 1024


class Served:
    def __init__(self, url: str, supervisor: int) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.supervisor = supervisor

    def tree_rss_kib(self) -> int:
        """The resident memory of the workers and every process under them, in KiB."""
        total = 0
        pending = list(worker_pids(self.supervisor))
        while pending:
            pid = pending.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            pending += [int(child) for child in children]
        return total


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with run_serve(CONFIG, tmp_path_factory.mktemp("bodies"), {"SLUICE_ADMIN_KEY": ADMIN}) as (url, process):
        yield Served(url, process.pid)


class Exchange:
    """One raw HTTP/1.1 request: its head sent at once, its body by `feed` in a thread; the reply read to EOF."""

    def __init__(self, port: int, head: str, feed: Any = None, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(timeout)
        self.sent = 0
        self.started = time.monotonic()
        self.sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        self.feeder = threading.Thread(target=self._feed, args=(feed,), daemon=True) if feed else None
        if self.feeder:
            self.feeder.start()

    def _feed(self, feed: Any) -> None:
        try:
            for chunk in feed():
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what a refusal should do

    def reply(self) -> tuple[int, dict[str, str], dict[str, Any], float, bool]:
        """Status, headers, JSON body, seconds until the reply was complete, and whether the server closed."""
        data = b""
        closed = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        elapsed = time.monotonic() - self.started
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers, json.loads(body), elapsed, closed


def flood() -> Iterator[bytes]:
    chunk = b"x" * 65536
    for _ in range(HUNDRED_MB // len(chunk)):
        yield chunk


def trickle() -> Iterator[bytes]:
    for _ in range(40):
        yield b" "
        time.sleep(0.2)


def post(path: str, headers: str = "", length: int | None = None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\nHost: sluice\nContent-Type: application/json\n{headers}{framing}\n"


@pytest.mark.parametrize(("path", "headers"), [
    ("/admin/keys", ""),
    ("/admin/keys", "Authorization: Bearer sk-wrong\n"),
    ("/projects/demo/summary", ""),
    ("/projects/demo/summary", "X-API-Key: sk-wrong\n"),
])
def test_a_keyless_100_mb_body_gets_its_401_unread(served: Served, path: str, headers: str) -> None:
    before = served.tree_rss_kib()
    exchange = Exchange(served.port, post(path, headers, HUNDRED_MB), flood)
    status, _, body, elapsed, closed = exchange.reply()
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    assert elapsed < 2.0 and closed
    assert exchange.feeder is not None
    exchange.feeder.join(5)
    assert exchange.sent < HUNDRED_MB // 4  # the server stopped taking the body
    assert served.tree_rss_kib() - before < 8 * 1024


def test_a_keyless_chunked_body_gets_its_401_unread(served: Served) -> None:
    def chunks() -> Iterator[bytes]:
        for piece in flood():
            yield b"%x\r\n%s\r\n" % (len(piece), piece)

    before = served.tree_rss_kib()
    exchange = Exchange(served.port, post("/admin/keys"), chunks)
    status, _, body, elapsed, closed = exchange.reply()
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert elapsed < 2.0 and closed
    assert served.tree_rss_kib() - before < 8 * 1024


@pytest.mark.parametrize("path", ["/admin/keys", "/projects/demo/summary"])
def test_max_body_bytes_holds_on_the_fastapi_routes(served: Served, path: str) -> None:
    key = ADMIN if path.startswith("/admin") else "sk-e2e"
    declared = Exchange(served.port, post(path, f"Authorization: Bearer {key}\n", HUNDRED_MB), flood)
    status, _, body, elapsed, _ = declared.reply()
    assert status == 413 and body["error"]["code"] == "request_too_large" and elapsed < 2.0

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"8000\r\n" + b"x" * 0x8000 + b"\r\n"

    sent = Exchange(served.port, post(path, f"Authorization: Bearer {key}\n"), chunks)
    status, _, body, elapsed, _ = sent.reply()
    assert status == 413 and body["error"] == {
        "message": "The request body is larger than this gateway accepts (65536 bytes).",
        "type": "invalid_request_error", "param": None, "code": "request_too_large"}


@pytest.mark.parametrize(("path", "key", "feed"), [
    ("/admin/keys", ADMIN, trickle),
    ("/projects/demo/summary", "sk-e2e", trickle),
    ("/v1/chat/completions", "sk-e2e", trickle),
    ("/v1/chat/completions", "sk-e2e", None),
    ("/provider/elsewhere/chat/completions", "sk-e2e", None),
])
def test_a_body_that_does_not_arrive_in_time_gets_408_and_a_closed_connection(
        served: Served, path: str, key: str, feed: Any) -> None:
    exchange = Exchange(served.port, post(path, f"Authorization: Bearer {key}\n", 200), feed)
    status, headers, body, elapsed, closed = exchange.reply()
    assert status == 408, body
    assert body["error"] == {"message": "The request body did not arrive within 1 s.",
                             "type": "invalid_request_error", "param": None, "code": "request_timeout"}
    assert headers["connection"] == "close" and closed
    assert 0.9 < elapsed < 3.5


def test_a_body_that_arrives_in_time_is_served(served: Served) -> None:
    body = b'{"model": "mock", "messages": [{"role": "user", "content": "slow but on time"}]}'

    def slowly() -> Iterator[bytes]:
        for index in range(0, len(body), 20):
            yield body[index:index + 20]
            time.sleep(0.1)

    exchange = Exchange(served.port, post("/v1/chat/completions", "Authorization: Bearer sk-e2e\n", len(body)),
                        slowly, timeout=0.5)  # the reply is complete; keep-alive leaves the socket open
    status, _, reply, _, _ = exchange.reply()
    assert status == 200 and reply["choices"][0]["message"]["content"] == "slow but on time"
    assert httpx.get(served.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(("path", "key"), [("/v1/chat/completions", "sk-e2e"), ("/admin/keys", ADMIN),
                                           ("/projects/demo/summary", "sk-e2e")])
def test_a_malformed_chunked_body_is_a_json_400(served: Served, path: str, key: str) -> None:
    head = post(path, f"Authorization: Bearer {key}\n") + "\nzz\nnot a chunk\n0\n"
    status, headers, body, elapsed, closed = Exchange(served.port, head).reply()
    assert status == 400 and headers["connection"] == "close" and closed
    assert body["error"] == {"message": "The request body could not be read: it ended before it was complete, or its "
                                        "chunked encoding is malformed.",
                             "type": "invalid_request_error", "param": None, "code": "unreadable_body"}
    assert elapsed < 2.0
