"""What redis-py tells the server about itself (CLIENT SETINFO), resolved once per process.

A client made by `Redis.from_url` resolves it again for every new connection, reading the package's metadata
(~2 ms of CPU each: the first requests after an idle spell open several connections at once)."""

from __future__ import annotations

from functools import cache

from redis.driver_info import DriverInfo


@cache
def driver_info() -> DriverInfo:
    """redis-py's own name and version, as each connection would have found them."""
    return DriverInfo()
