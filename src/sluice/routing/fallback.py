"""Which failed calls may go to another deployment or a fallback model, and why (the `reason` label)."""

from __future__ import annotations

from sluice.errors import GatewayError, UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from sluice.routing.breaker import CircuitOpen

QUOTA_CODES = frozenset({"insufficient_quota", "quota_exceeded", "billing_hard_limit_reached", "billing_error",
                         "credit_balance_too_low"})
"""Codes (or types) upstreams use for a spent budget or quota (OpenAI, Azure, Anthropic)."""
CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTEXT_PHRASES = ("maximum context length", "context length", "context window", "prompt is too long",
                   "too many tokens")
CONTEXT_WINDOW = "context_window"


def failover_reason(error: GatewayError) -> str | None:
    """Why a call that failed with `error` may be sent elsewhere, or None when it must not (the caller's own
    error: a 4xx that another deployment would answer the same way)."""
    if isinstance(error, CircuitOpen):
        return "breaker_open"
    if isinstance(error, UpstreamUnreachable):
        return "unreachable"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamProtocolError):
        return "protocol"
    if not isinstance(error, UpstreamError):
        return None
    if is_too_long(error):
        return CONTEXT_WINDOW
    status = error.status
    if error.code in QUOTA_CODES or error.type in QUOTA_CODES:
        return "quota" if status in (400, 402, 403, 429) else f"http_{status}"
    if status >= 500:
        return f"http_{status}"
    if status == 429:
        return "rate_limited"
    if status == 401:
        return "upstream_auth"  # the gateway's credentials for that deployment, not the caller's key
    return None


def is_too_long(error: UpstreamError) -> bool:
    """Whether the upstream refused the request as too long for the model's context window."""
    if error.status not in (400, 413):
        return False
    if error.code in CONTEXT_CODES:
        return True
    message = error.message.lower()
    return any(phrase in message for phrase in CONTEXT_PHRASES)
