"""WebSocket routes of the service gateway against real loopback WebSocket services (the `websockets` library):
echo both ways, close codes and reasons each way, auth at the handshake, subprotocols, the message size limit,
the idle timeout, the request log row of a connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sluice.app import create_app
from sluice.config import parse_config
from sluice.settings import Settings
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.websocket_service import WebSocketService
from tests.servers import free_port, serve

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
ADMIN = "sk-admin-websockets"


@pytest.fixture(scope="module")
def upstream() -> Iterator[WebSocketService]:
    with WebSocketService() as service:
        yield service


def config(upstream: WebSocketService, *, request_log: bool = False) -> str:
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
{"" if request_log else "request_log: {enabled: false}"}
services:
  chat: {{instances: [{{url: "{upstream.url}"}}]}}
routes:
  - {{path: "/ws/**", service: chat, websocket: true, strip_prefix: /ws, websocket_max_message_bytes: 1000}}
  - {{path: "/public/ws/**", service: chat, websocket: true, auth: public, strip_prefix: /public/ws}}
  - {{path: "/quiet/**", service: chat, websocket: true, strip_prefix: /quiet, websocket_idle_seconds: 0.3}}
  - {{path: "/http/**", service: chat, strip_prefix: /http}}
"""


@pytest.fixture(scope="module")
def gateway(upstream: WebSocketService) -> Iterator[str]:
    with run_gateway(config(upstream)) as url:
        yield url.replace("http://", "ws://")


def seen(upstream: WebSocketService) -> dict[str, Any]:
    return upstream.seen.get(timeout=5)


def open_socket(url: str, **kwargs: Any) -> ClientConnection:
    return connect(url, open_timeout=5, close_timeout=5, **kwargs)


def test_text_and_binary_frames_echo_both_ways(gateway: str, upstream: WebSocketService) -> None:
    payload = bytes(range(256)) * 3
    with open_socket(gateway + "/ws/echo/room?id=7", additional_headers=AUTH) as ws:
        ws.send("héllo, wörld")
        assert ws.recv(timeout=5) == "héllo, wörld"
        ws.send(payload)
        echoed = ws.recv(timeout=5)
        assert isinstance(echoed, bytes) and echoed == payload
        ws.send(b"")
        assert ws.recv(timeout=5) == b""
        assert ws.response.headers["x-request-id"]
    entry = seen(upstream)
    assert entry["path"] == "/echo/room?id=7"  # the prefix stripped, the query kept
    headers = entry["headers"]
    assert "authorization" not in headers and headers["x-sluice-key-id"]
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert headers["x-request-id"] == ws.response.headers["x-request-id"]


def test_the_upstreams_close_code_and_reason_reach_the_client(gateway: str, upstream: WebSocketService) -> None:
    with open_socket(gateway + "/ws/close", additional_headers=AUTH) as ws:
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "done here")
    assert seen(upstream)["close"] == (4001, "done here")


def test_the_clients_close_code_and_reason_reach_the_upstream(gateway: str, upstream: WebSocketService) -> None:
    with open_socket(gateway + "/ws/watch", additional_headers=AUTH) as ws:
        ws.close(4002, "leaving now")
    assert seen(upstream)["close"] == (4002, "leaving now")


def test_a_handshake_without_a_valid_key_is_refused(gateway: str, upstream: WebSocketService) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(gateway + "/ws/echo", additional_headers=headers)
        assert refused.value.response.status_code == 401
        assert orjson.loads(refused.value.response.body or b"{}")["error"]["code"] == "invalid_api_key"
    with pytest.raises(InvalidStatus) as unknown:
        open_socket(gateway + "/elsewhere", additional_headers=AUTH)
    assert unknown.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as plain:  # an HTTP-only route takes no WebSocket
        open_socket(gateway + "/http/echo", additional_headers=AUTH)
    assert plain.value.response.status_code == 404
    with open_socket(gateway + "/public/ws/echo") as ws:  # a public route needs no key
        ws.send("open")
        assert ws.recv(timeout=5) == "open"
    assert "x-sluice-key-id" not in seen(upstream)["headers"]
    assert upstream.seen.empty()  # the refused handshakes never reached the service


def test_the_subprotocol_the_upstream_chose_is_the_clients(gateway: str, upstream: WebSocketService) -> None:
    with open_socket(gateway + "/ws/echo", additional_headers=AUTH,
                     subprotocols=["nope", "chat.v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"
    assert seen(upstream)["subprotocol"] == "chat.v2"
    with open_socket(gateway + "/ws/echo", additional_headers=AUTH) as ws:
        assert ws.subprotocol is None
    assert seen(upstream)["subprotocol"] is None


def test_a_message_over_the_limit_closes_with_1009(gateway: str, upstream: WebSocketService) -> None:
    with open_socket(gateway + "/ws/echo", additional_headers=AUTH) as ws:
        ws.send("x" * 1000)  # at the limit: relayed
        assert ws.recv(timeout=5) == "x" * 1000
    seen(upstream)
    with open_socket(gateway + "/ws/watch", additional_headers=AUTH) as ws:
        ws.send("é" * 501)  # 1,002 bytes of UTF-8
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    entry = seen(upstream)
    assert entry["close"][0] == 1009 and entry["got"] == []  # the service is told too, and never got the message
    with open_socket(gateway + "/ws/echo", additional_headers=AUTH) as ws:
        ws.send("big")  # the service answers "big", then 2,000 bytes: over the limit the other way
        assert ws.recv(timeout=5) == "big"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    seen(upstream)


def test_an_idle_connection_is_closed_with_1001(gateway: str, upstream: WebSocketService) -> None:
    with open_socket(gateway + "/quiet/echo", additional_headers=AUTH) as ws:
        started = time.monotonic()
        for _ in range(3):  # messages keep it open past the idle time
            time.sleep(0.2)
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        waited = time.monotonic() - started
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert 0.8 < waited < 3
    assert seen(upstream)["close"][0] == 1001


def test_a_connection_is_one_request_log_row(upstream: WebSocketService) -> None:
    with run_gateway(config(upstream, request_log=True), admin_key=ADMIN) as url:
        with open_socket(url.replace("http://", "ws://") + "/ws/echo", additional_headers=AUTH,
                         subprotocols=["chat.v1"]) as ws:  # type: ignore[list-item]
            for message in ("one", "twenty two", b"\x00\x01\x02"):
                ws.send(message)
                ws.recv(timeout=5)
            ws.close(1000, "done")
        seen(upstream)
        entries: list[dict[str, Any]] = []
        for _ in range(100):
            entries = httpx.get(url + "/admin/logs", params={"include_bodies": "true"},
                                headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
            if entries:
                break
            time.sleep(0.1)
    entry = entries[0]
    assert entry["operation"] == "websocket" and entry["method"] == "GET" and entry["endpoint"] == "/ws/echo"
    assert entry["response"]["status_code"] == 101 and entry["provider"]["name"] == "chat"
    assert entry["routing"]["route"] == "/ws/**"
    assert entry["timing"]["total_latency_ms"] > 0
    assert entry["response"]["body"] == {"client_to_upstream": {"messages": 3, "bytes": 16},
                       "upstream_to_client": {"messages": 3, "bytes": 16},
                       "subprotocol": "chat.v1", "close": {"by": "client", "code": 1000, "reason": "done"}}


def test_a_handshake_goes_to_another_instance_when_one_is_down(upstream: WebSocketService) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    text = config(upstream).replace(f'instances: [{{url: "{upstream.url}"}}]',
                                    f'strategy: round_robin, instances: [{{url: "{dead}"}}, {{url: "{upstream.url}"}}]')
    assert dead in text
    with run_gateway(text) as url:
        for _ in range(2):  # round-robin: one of the two handshakes meets the dead instance first
            with open_socket(url.replace("http://", "ws://") + "/ws/echo", additional_headers=AUTH) as ws:
                ws.send("still here")
                assert ws.recv(timeout=5) == "still here"
                assert ws.response.headers["x-sluice-instance"] == f"chat/{upstream.url}"
            seen(upstream)


def test_a_draining_worker_ends_its_websockets_at_once(upstream: WebSocketService, tmp_path: Path) -> None:
    """A reload drains the old worker: its WebSockets end with 1001 (clients reconnect to a new worker) instead of
    holding it for the whole grace period."""
    app = create_app(parse_config(config(upstream), "test.yaml"),
                     Settings(api_keys=[DEV_KEY], data_dir=str(tmp_path)))
    with serve(app) as url, open_socket(url.replace("http://", "ws://") + "/ws/echo",
                                        additional_headers=AUTH) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        started = time.monotonic()
        app.drain()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert time.monotonic() - started < 2


def test_plain_http_to_a_websocket_route_is_told_to_upgrade(gateway: str) -> None:
    reply = httpx.get(gateway.replace("ws://", "http://") + "/ws/echo", headers=AUTH)
    assert reply.status_code == 426 and reply.headers["upgrade"] == "websocket"
    assert reply.json()["error"]["code"] == "upgrade_required"
