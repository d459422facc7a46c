"""Credentials a caller puts in the query string of `/provider/{name}/…` (Gemini's `?key=`, `?api_key=`,
`?api-key=`, …) never reach the upstream; the provider's own credentials are sent as configured, and every other
query parameter is forwarded byte for byte. Checked against real loopback upstreams that record what they got."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.integration.test_secrets_never_leak import Received, RecordingUpstream
from tests.servers import serve

CALLER_SECRET = "caller-own-" + secrets.token_hex(12)
CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}", api_key: openai-provider-key}}
  az: {{type: azure, base_url: "{url}", api_key: azure-provider-key, api_version: "2024-10-21"}}
  claude: {{type: anthropic, base_url: "{url}", api_key: claude-provider-key}}
  gemini: {{type: openai, base_url: "{url}", headers: {{x-goog-api-key: gemini-provider-key}}}}
  mock: {{type: mock}}
"""
CONFIGURED = {
    "up": (b"authorization", b"Bearer openai-provider-key"),
    "az": (b"api-key", b"azure-provider-key"),
    "claude": (b"x-api-key", b"claude-provider-key"),
    "gemini": (b"x-goog-api-key", b"gemini-provider-key"),
}
CREDENTIAL_NAMES = ["key", "Key", "KEY", "api_key", "api-key", "API-Key", "apikey", "x-api-key", "x-goog-api-key",
                    "access_token", "token", "auth_token", "subscription-key", "Ocp-Apim-Subscription-Key",
                    "api%5Fkey", "%6Bey"]


@dataclass
class Upstream:
    recording: RecordingUpstream
    url: str

    def last(self) -> Received:
        assert self.recording.received, "the upstream received nothing"
        return self.recording.received[-1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    recording = RecordingUpstream(create_fake_openai(api_key=None))
    with serve(recording) as url:
        yield Upstream(recording, url)


@pytest.fixture(scope="module")
def gateway(upstream: Upstream) -> Iterator[str]:
    with run_gateway(CONFIG.format(url=upstream.url), keys=(DEV_KEY,)) as url:
        yield url


def _get(gateway: str, target: str, headers: dict[str, str] | None = None) -> httpx.Response:
    auth = {"Authorization": f"Bearer {DEV_KEY}"} if headers is None else headers
    return httpx.get(gateway + target, headers=auth, timeout=10)


def _everything(received: Received) -> bytes:
    return b"\n".join([received.raw_path, received.query, bytes(received.body),
                       *(name + b": " + value for name, value in received.headers)])


@pytest.mark.parametrize("provider", sorted(CONFIGURED))
@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_a_credential_in_the_query_is_not_forwarded(gateway: str, upstream: Upstream, provider: str,
                                                    name: str) -> None:
    reply = _get(gateway, f"/provider/{provider}/raw/echo/x?alt=json&{name}={CALLER_SECRET}&page=2")
    assert reply.status_code == 200, reply.text
    assert CALLER_SECRET not in reply.text  # the echo reflects what the upstream got
    received = upstream.last()
    assert CALLER_SECRET.encode() not in _everything(received)
    assert DEV_KEY.encode() not in _everything(received)
    query = received.query.decode()
    expected = "alt=json&page=2" + ("&api-version=2024-10-21" if provider == "az" else "")
    assert query == expected
    header, value = CONFIGURED[provider]
    assert [v for n, v in received.headers if n == header] == [value]


def test_the_caller_s_sluice_key_in_the_query_is_dropped_too(gateway: str, upstream: Upstream) -> None:
    reply = _get(gateway, f"/provider/up/raw/echo/x?key={DEV_KEY}&api_key={DEV_KEY}&api-key={DEV_KEY}&a=1")
    assert reply.status_code == 200
    assert DEV_KEY.encode() not in _everything(upstream.last())
    assert upstream.last().query == b"a=1"
    assert DEV_KEY not in reply.text  # the echo reflects what the upstream got


def test_a_key_only_in_the_query_does_not_authenticate(gateway: str, upstream: Upstream) -> None:
    before = len(upstream.recording.received)
    for name in ("key", "api_key", "api-key"):
        reply = _get(gateway, f"/provider/up/raw/echo/x?{name}={DEV_KEY}", headers={})
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert DEV_KEY not in reply.text
    assert len(upstream.recording.received) == before


@pytest.mark.parametrize("query", ["keys=1", "monkey=2", "page_token=3", "key_id=4", "tokens=5", "x=key",
                                   "q=api_key%3Dz", "a=1&&b=2", "empty=&flag", "sp=%20z&x=1&x=2"])
def test_other_parameters_are_forwarded_unchanged(gateway: str, upstream: Upstream, query: str) -> None:
    """The filter goes by parameter name, never by substring, and leaves the rest of the query byte for byte
    (which also shows the upstream's record would see a credential that was forwarded)."""
    reply = _get(gateway, f"/provider/up/raw/echo/x?{query}")
    assert reply.status_code == 200
    assert upstream.last().query == query.encode()
    assert reply.json()["query"] == query


def test_azure_keeps_the_caller_s_api_version_and_drops_its_api_key(gateway: str, upstream: Upstream) -> None:
    reply = _get(gateway, f"/provider/az/raw/echo/x?api-version=2025-01-01&api-key={CALLER_SECRET}")
    assert reply.status_code == 200, reply.text
    received = upstream.last()
    assert received.query == b"api-version=2025-01-01"
    assert [v for n, v in received.headers if n == b"api-key"] == [b"azure-provider-key"]


def test_credential_headers_of_the_caller_are_replaced_by_the_configured_ones(gateway: str,
                                                                            upstream: Upstream) -> None:
    headers = {"X-API-Key": DEV_KEY, "Authorization": f"Bearer {CALLER_SECRET}",
               "x-goog-api-key": CALLER_SECRET}
    reply = _get(gateway, "/provider/gemini/raw/echo/x", headers=headers)
    assert reply.status_code == 200, reply.text
    received = upstream.last()
    assert CALLER_SECRET.encode() not in _everything(received) and DEV_KEY.encode() not in _everything(received)
    assert [v for n, v in received.headers if n == b"x-goog-api-key"] == [b"gemini-provider-key"]
    assert not [n for n, _ in received.headers if n == b"authorization"]
