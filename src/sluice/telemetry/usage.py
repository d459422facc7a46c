"""Token usage of an exchange, found cheaply in its raw bytes (metrics need it for every request)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sluice.exchange import Exchange

_USAGE = b'"usage"'
_COUNT = re.compile(rb'"(prompt|completion|total)_tokens"\s*:\s*(\d+)')
_USAGE_SPAN = 600
"""How far after `"usage"` its counts can be (details objects included)."""
_TAIL_BYTES = 2048
"""Usage comes in a stream's last event before `[DONE]`; chunks may split events anywhere."""


@dataclass(slots=True, frozen=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    total: int = 0


def usage_of(exchange: Exchange) -> Usage | None:
    """The `usage` the reply (or the stream's last chunks) reported, without decoding the whole body."""
    if exchange.stream:
        return _scan(_tail(exchange.chunks)) if exchange.chunks else None
    return _scan(exchange.response_body) if exchange.response_body else None


def _scan(raw: bytes) -> Usage | None:
    at = raw.rfind(_USAGE)
    if at < 0:
        return None
    counts = dict(_COUNT.findall(raw, at, at + _USAGE_SPAN))
    if not counts:
        return None
    prompt, completion = int(counts.get(b"prompt", 0)), int(counts.get(b"completion", 0))
    return Usage(prompt, completion, int(counts.get(b"total", prompt + completion)))


def _tail(chunks: list[bytes]) -> bytes:
    """The last `_TAIL_BYTES` or more of a stream, in whole chunks."""
    size, start = 0, len(chunks)
    while start and size < _TAIL_BYTES:
        start -= 1
        size += len(chunks[start])
    return chunks[-1] if start == len(chunks) - 1 else b"".join(chunks[start:])
