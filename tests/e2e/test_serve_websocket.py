"""`sluice serve` (granian) passes WebSocket traffic: a route's handshake, frames both ways, a refused handshake's
status, a close code from the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e.test_serve import run_serve
from tests.fakes.websocket_service import WebSocketService


@pytest.fixture
def upstream() -> Iterator[WebSocketService]:
    with WebSocketService() as service:
        yield service


def test_granian_serves_websocket_routes(tmp_path: Path, upstream: WebSocketService) -> None:
    config = f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
request_log: {{enabled: false}}
services:
  chat: {{instances: [{{url: "{upstream.url}"}}]}}
routes:
  - {{path: "/ws/**", service: chat, websocket: true, strip_prefix: /ws}}
"""
    with run_serve(config, tmp_path) as (url, _):
        base = url.replace("http://", "ws://")
        auth = {"Authorization": "Bearer sk-e2e"}
        with connect(base + "/ws/echo", additional_headers=auth, subprotocols=["chat.v1"],  # type: ignore[list-item]
                     open_timeout=5) as ws:
            assert ws.subprotocol == "chat.v1"
            ws.send("héllo")
            assert ws.recv(timeout=5) == "héllo"
            ws.send(b"\x00\xff" * 100)
            assert ws.recv(timeout=5) == b"\x00\xff" * 100
        assert upstream.seen.get(timeout=5)["path"] == "/echo"
        with pytest.raises(InvalidStatus) as refused:  # granian has the websocket.http.response extension
            connect(base + "/ws/echo", open_timeout=5)
        assert refused.value.response.status_code == 401
        with connect(base + "/ws/close", additional_headers=auth, open_timeout=5) as ws:
            ws.send("bye")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        rcvd = closed.value.rcvd
        assert rcvd is not None and (rcvd.code, rcvd.reason) == (4001, "done here")
