"""Log ids and timestamp text, made cheaply: the request log makes them for every exchange on the gateway's core.

`str(uuid.uuid4())` costs ~4 µs and `datetime.isoformat()` ~2 µs; these cost a tenth of that. A record keeps its
timestamp as ISO 8601 text with microseconds (`iso_utc`), made once; every sink takes it from there.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_PREFIXES: dict[int, str] = {}
_PREFIX_CACHE = 256
_PER_PREFIX = 1 << 24


def log_ids(count: int) -> list[str]:
    """`count` new log ids, UUIDv7-shaped: the Unix milliseconds now, 50 random bits from `os.urandom`, then the
    position in the batch. They sort by time, so new rows land at the right edge of the primary-key index, and
    two batches collide only if they are made in the same millisecond and draw the same 50 bits."""
    ids: list[str] = []
    for start in range(0, count, _PER_PREFIX):
        millis = f"{int(time.time() * 1000) & 0xFFFF_FFFF_FFFF:012x}"
        rand = os.urandom(7).hex()
        prefix = f"{millis[:8]}-{millis[8:]}-7{rand[:3]}-{_VARIANT[rand[3]]}{rand[4:7]}-{rand[7:13]}"
        ids.extend([f"{prefix}{index:06x}" for index in range(min(count - start, _PER_PREFIX))])
    return ids


def iso_utc(stamp: float) -> str:
    """Unix time `stamp` as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (a per-second cache makes the date part)."""
    micros = int(stamp * 1e6 + 0.5)
    seconds = micros // 1_000_000
    prefix = _PREFIXES.get(seconds)
    if prefix is None:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
        if len(_PREFIXES) >= _PREFIX_CACHE:
            _PREFIXES.clear()
        _PREFIXES[seconds] = prefix
    return prefix + str(micros % 1_000_000 + 1_000_000)[1:] + "+00:00"


def sqlite_text(iso: str) -> str:
    """An `iso_utc` text as the naive UTC text SQLAlchemy keeps in a SQLite DATETIME column (so queries compare)."""
    return f"{iso[:10]} {iso[11:26]}"


def parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def iso_of(value: datetime | str | float) -> str:
    """A timestamp from a row (a datetime, ISO 8601 text or Unix time) as `iso_utc` text; naive means UTC."""
    if isinstance(value, (int, float)):
        return iso_utc(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.isoformat(timespec="microseconds")
