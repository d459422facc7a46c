"""The CORS origin check on WebSocket handshakes (cross-site WebSocket hijacking): browsers never preflight a
WebSocket and send the page's cookies with it, so a route under a `cors:` policy refuses, with 403 at the
handshake, an `Origin` the policy does not allow; real `websockets` clients against a real loopback echo service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.websocket_service import WebSocketService

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
APP = "http://app.example.com:5173"
PARTNER = "https://partner.example.org"
EVIL = "https://evil.example.net"
ADMIN = "sk-admin-websocket-cors"


@pytest.fixture(scope="module")
def upstream() -> Iterator[WebSocketService]:
    with WebSocketService() as service:
        yield service


def config(upstream: WebSocketService, *, global_cors: bool = True, request_log: bool = False) -> str:
    policy = f'cors: {{allow_origins: ["{APP}"]}}\n' if global_cors else ""
    return f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
{"" if request_log else "request_log: {enabled: false}"}
{policy}services:
  chat: {{instances: [{{url: "{upstream.url}"}}]}}
routes:
  - {{path: "/ws/**", service: chat, websocket: true, strip_prefix: /ws}}
  - {{path: "/partner/**", service: chat, websocket: true, strip_prefix: /partner,
      cors: {{allow_origins: ["https://*.example.org"]}}}}
  - {{path: "/own/**", service: chat, websocket: true, strip_prefix: /own, cors: false}}
  - {{path: "/public/**", service: chat, websocket: true, auth: public, strip_prefix: /public}}
"""


@pytest.fixture(scope="module")
def gateway(upstream: WebSocketService) -> Iterator[str]:
    with run_gateway(config(upstream)) as url:
        yield url.replace("http://", "ws://")


def open_socket(url: str, origin: str | None, **kwargs: Any) -> ClientConnection:
    return connect(url, origin=Origin(origin) if origin is not None else None, open_timeout=5, close_timeout=5,
                   **kwargs)


def echoes(url: str, origin: str | None, headers: dict[str, str] | None = None) -> bool:
    with open_socket(url, origin, additional_headers=headers or AUTH) as ws:
        ws.send("ping from " + (origin or "no origin"))
        return bool(ws.recv(timeout=5) == "ping from " + (origin or "no origin"))


def refused(url: str, origin: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as caught:
        open_socket(url, origin, additional_headers=headers or AUTH)
    response = caught.value.response
    return response.status_code, orjson.loads(response.body or b"{}")


def seen(upstream: WebSocketService, count: int) -> list[dict[str, Any]]:
    """The next `count` connections the service saw (each is put there once it closed)."""
    return [upstream.seen.get(timeout=5) for _ in range(count)]


def test_an_allowed_origin_and_a_client_without_one_connect(gateway: str, upstream: WebSocketService) -> None:
    assert echoes(gateway + "/ws/echo", APP)
    assert echoes(gateway + "/ws/echo", None)  # not a browser: no cross-site page to protect against
    assert echoes(gateway + "/partner/echo", PARTNER)
    assert len(seen(upstream, 3)) == 3


def test_a_refused_origin_gets_403_at_the_handshake_and_never_reaches_the_service(
        gateway: str, upstream: WebSocketService) -> None:
    status, body = refused(gateway + "/ws/echo", EVIL)
    assert status == 403
    assert body["error"]["code"] == "cors_origin_refused" and EVIL in body["error"]["message"]
    # a route's own policy replaces the global one: the global origin is refused there, the partner's elsewhere
    assert refused(gateway + "/partner/echo", APP)[0] == 403
    assert refused(gateway + "/ws/echo", PARTNER)[0] == 403
    # refused before auth: a valid key does not help, and no key gets 403 rather than 401
    assert refused(gateway + "/public/echo", EVIL, {})[0] == 403
    assert refused(gateway + "/ws/echo", EVIL, {"Authorization": "Bearer sk-wrong"})[0] == 403
    # origins are compared as browsers send them: a look-alike is not the allowed one
    assert refused(gateway + "/ws/echo", APP + ".evil.example.net")[0] == 403
    assert refused(gateway + "/ws/echo", "null")[0] == 403
    time.sleep(0.2)
    assert upstream.seen.empty()


def test_cors_false_leaves_the_origin_to_the_service(gateway: str, upstream: WebSocketService) -> None:
    assert echoes(gateway + "/own/echo", EVIL)
    entry = seen(upstream, 1)[0]
    assert entry["headers"]["origin"] == EVIL  # passed on, for the service to judge


def test_without_any_cors_policy_every_origin_connects(upstream: WebSocketService) -> None:
    with run_gateway(config(upstream, global_cors=False)) as url:
        base = url.replace("http://", "ws://")
        assert echoes(base + "/ws/echo", EVIL)
        assert refused(base + "/partner/echo", EVIL)[0] == 403  # the route's own policy still holds
    seen(upstream, 1)


def test_a_refused_handshake_is_one_request_log_row(upstream: WebSocketService) -> None:
    with run_gateway(config(upstream, request_log=True), admin_key=ADMIN) as url:
        assert refused(url.replace("http://", "ws://") + "/ws/echo", EVIL)[0] == 403
        entries: list[dict[str, Any]] = []
        for _ in range(100):
            entries = httpx.get(url + "/admin/logs", headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
            if entries:
                break
            time.sleep(0.1)
    assert entries[0]["operation"] == "websocket" and entries[0]["response"]["status_code"] == 403
    assert "is not allowed" in entries[0]["error"]
