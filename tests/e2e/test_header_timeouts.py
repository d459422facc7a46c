"""Connections whose request headers never finish, under `sluice serve` with few places per worker
(`SLUICE_MAX_CONCURRENCY=8`): `server.header_read_timeout_seconds` closes them, so twenty of them hold the worker's
places only that long and `/health` answers again right after."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.e2e.test_serve import run_serve

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
server: {header_read_timeout_seconds: 1.5}
"""


def test_trickling_headers_are_cut_and_health_answers_again(tmp_path: Path) -> None:
    with run_serve(CONFIG, tmp_path, {"SLUICE_MAX_CONCURRENCY": "8"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        opened = time.monotonic()
        slow = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # and never the rest
            slow.append(sock)
        answered = None
        while time.monotonic() - opened < 10:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    answered = time.monotonic() - opened
                    break
            except httpx.TransportError:
                pass
        assert answered is not None and answered < 6, answered
        closed = 0
        for sock in slow:
            sock.settimeout(5)
            try:
                closed += sock.recv(1024) is not None  # b"" (closed), or a 408 before the close
            except OSError:
                closed += 1
            sock.close()
        assert closed == len(slow)
        assert httpx.get(url + "/health", timeout=2).status_code == 200


def test_connections_that_never_send_a_byte_are_closed_and_health_answers_again(tmp_path: Path) -> None:
    """granian would hold these for ever (the timeout starts at a request's first byte): the worker's idle reaper
    (serve/idle_reaper.py) shuts them down once older than the header read timeout."""
    with run_serve(CONFIG, tmp_path, {"SLUICE_MAX_CONCURRENCY": "8"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        opened = time.monotonic()
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        answered = None
        while time.monotonic() - opened < 12:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    answered = time.monotonic() - opened
                    break
            except httpx.TransportError:
                pass
        assert answered is not None and answered < 8, answered
        for sock in silent:
            sock.settimeout(8)
            assert sock.recv(1024) == b""  # closed by the gateway
            sock.close()
        # A slow client that did send its request is not touched: a stream in flight keeps going.
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"},
                          json={"model": "mock", "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}, timeout=10) as reply:
            assert reply.status_code == 200
            assert any(line == "data: [DONE]" for line in reply.iter_lines())


PATIENT = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
server: {header_read_timeout_seconds: 60, max_pending_connections: 2}
"""


def test_pending_connections_past_the_budget_are_closed_at_once(tmp_path: Path) -> None:
    """With a header timeout of a minute, twenty connections trickling their headers would hold every place that
    long; the budget of pending connections (2 of 8 places) closes the oldest within a sweep or two, so `/health`
    and an authenticated stream answer within seconds, and the two newest pending connections are left alone."""
    with run_serve(PATIENT, tmp_path, {"SLUICE_MAX_CONCURRENCY": "8"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        opened = time.monotonic()
        slow = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            slow.append(sock)
        answered = None
        while time.monotonic() - opened < 15:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    answered = time.monotonic() - opened
                    break
            except httpx.TransportError:
                pass
        assert answered is not None and answered < 8, answered
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-e2e"},
                          json={"model": "mock", "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}, timeout=10) as reply:
            assert reply.status_code == 200
            assert any(line == "data: [DONE]" for line in reply.iter_lines())
        time.sleep(1.5)  # a sweep or two more: what is left pending is within the budget
        still_open = 0
        for sock in slow:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1024) != b""
            except BlockingIOError:
                still_open += 1  # nothing to read: the gateway still holds it
            except OSError:
                pass
            sock.close()
        assert 1 <= still_open <= 2, still_open
        assert time.monotonic() - opened < 30  # long before the header timeout could have closed anything
