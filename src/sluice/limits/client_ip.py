"""The client address a request is limited by: the TCP peer, or X-Forwarded-For when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    """Finds the client of a request; with no trusted proxies it is always the peer."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: list[Network] = [ipaddress.ip_network(entry, strict=False) for entry in trusted]

    def __call__(self, scope: MutableMapping[str, Any]) -> str:
        client = scope.get("client")
        peer: str = client[0] if client else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
        if not forwarded:
            return peer
        hops = [hop.strip() for hop in b",".join(forwarded).decode("latin-1").split(",")]
        for hop in reversed(hops):  # the rightmost address a trusted proxy did not add is the client
            if not self._is_trusted(hop):
                return hop if _valid(hop) else peer
        return hops[0] if _valid(hops[0]) else peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
