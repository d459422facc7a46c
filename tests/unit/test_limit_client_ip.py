"""The client address per-IP limits use: the peer, or X-Forwarded-For only from a trusted proxy."""

from __future__ import annotations

from typing import Any

from sluice.limits.client_ip import ClientAddress


def scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5000), "headers": headers}


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddress([])(scope("198.51.100.1", "203.0.113.9")) == "198.51.100.1"


def test_a_trusted_proxy_names_the_client() -> None:
    address = ClientAddress(["10.0.0.0/8"])
    assert address(scope("10.0.0.2", "203.0.113.9")) == "203.0.113.9"
    assert address(scope("10.0.0.2", "1.1.1.1, 203.0.113.9, 10.0.0.7")) == "203.0.113.9"  # rightmost untrusted
    assert address(scope("10.0.0.2")) == "10.0.0.2"
    assert address(scope("10.0.0.2", "not-an-address")) == "10.0.0.2"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert ClientAddress(["10.0.0.0/8"])(scope("198.51.100.1", "203.0.113.9")) == "198.51.100.1"
    assert ClientAddress(["10.0.0.0/8"])({"client": None, "headers": []}) == "unknown"
