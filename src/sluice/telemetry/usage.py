"""Token usage of an exchange, as the stream reader finds it in the raw bytes (metrics need it for every request)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.exchange import Exchange
from sluice.stream_reader import reply_usage, stream_usage


@dataclass(slots=True, frozen=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    total: int = 0


def usage_of(exchange: Exchange) -> Usage | None:
    """The `usage` the reply (or the stream's last chunks) reported, without decoding the whole body; read once
    per finished exchange, however many observers ask. A service route's reply is never read for it (its tokens
    are not charged to token limits or budgets, nor counted in `sluice_tokens_total`)."""
    read = exchange.usage_read
    if read is not None:
        return read[0]
    if exchange.route is not None:  # a service's reply: not an LLM's, whatever its body says
        usage = None
    elif exchange.wire is not None:  # a provider's own protocol (frontdoors/native_view.py)
        from sluice.frontdoors.native_view import native_usage

        usage = _counts(native_usage(exchange))
    elif exchange.stream:
        usage = _counts(stream_usage(exchange.chunks)) if exchange.chunks else None
    else:
        usage = _counts(reply_usage(exchange.response_body)) if exchange.response_body else None
    exchange.usage_read = (usage,)
    return usage


def _counts(usage: dict[str, Any] | None) -> Usage | None:
    if usage is None:
        return None
    prompt, completion, total = (usage.get(name) for name in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not any(type(count) is int for count in (prompt, completion, total)):
        return None
    prompt = prompt if type(prompt) is int else 0
    completion = completion if type(completion) is int else 0
    return Usage(prompt, completion, total if type(total) is int else prompt + completion)
