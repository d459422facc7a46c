"""Which upstream failures count against a provider's breaker, which are retried, and how long to wait first.

A plain loop in routing/guard.py does the retrying, not tenacity: tenacity's `AsyncRetrying` builds a retry
state and runs its strategy objects around every call, successful or not, while here the first try is a bare
`await` and this module is only consulted once a try has already failed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from sluice.errors import GatewayError, UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from sluice.routing.options import RetryOptions

RETRIED_STATUSES = frozenset({429, 502, 503, 504, 529})
"""Upstream statuses worth another try: rate limited, bad gateway, unavailable, gateway timeout, overloaded."""


def is_failure(error: GatewayError) -> bool:
    """Whether `error` says the upstream is unhealthy (counts against its breaker): no connection, a timeout,
    a 200 that is not the protocol (never retried: the upstream did answer), or a 5xx from the upstream. 4xx
    answers (the caller's fault, or a rate limit) are not failures."""
    if isinstance(error, (UpstreamUnreachable, UpstreamTimeout, UpstreamProtocolError)):
        return True
    return isinstance(error, UpstreamError) and error.status >= 500


def retry_reason(error: GatewayError) -> str | None:
    """The `reason` label of a retry of a call that failed with `error`, or None when it must not be retried."""
    if isinstance(error, UpstreamUnreachable):
        return "unreachable"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamError) and error.status in RETRIED_STATUSES and error.code != "insufficient_quota":
        return f"http_{error.status}"
    return None


class RetryPolicy:
    """How many extra tries a provider gets and the pause before each: exponential backoff with jitter, or the
    upstream's `Retry-After` when it asks for no more than `max_retry_after_seconds`."""

    __slots__ = ("attempts", "initial", "ceiling", "max_retry_after")

    def __init__(self, options: RetryOptions) -> None:
        self.attempts = options.attempts
        self.initial = options.backoff_initial_seconds
        self.ceiling = options.backoff_max_seconds
        self.max_retry_after = options.max_retry_after_seconds

    def delay(self, retry: int, error: GatewayError) -> float | None:
        """Seconds to wait before retry number `retry` (1, 2, …) after `error`; None to give up instead.

        A 429 is retried only when its `Retry-After` says when: without one it may be a spent quota."""
        if not isinstance(error, UpstreamError):
            return self.backoff(retry)
        asked = retry_after_seconds(error.retry_after_header)
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        return None if error.status == 429 else self.backoff(retry)

    def backoff(self, retry: int) -> float:
        """`initial × 2^(retry-1)`, at most `ceiling`, with "equal jitter": half of it fixed, half random, so
        that callers failing together spread out but never retry at once."""
        step = min(self.ceiling, self.initial * 2.0 ** (retry - 1))
        return step / 2 + random.uniform(0, step / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header (delay seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
