"""Rate-limit response headers (IETF draft-ietf-httpapi-ratelimit-headers-11 and the common X-RateLimit-*) and
the 429 error that carries them.

    RateLimit-Policy: "key";q=60;w=60, "key-tokens";q=10000;qu="tokens";w=60,
                      "key-concurrency";q=4;qu="concurrent-requests"   (one line on the wire)
    RateLimit: "key";r=12;t=48
    X-RateLimit-Limit: 60   X-RateLimit-Remaining: 12   X-RateLimit-Reset: 48   (delta seconds, not a timestamp)

`RateLimit` and the X- trio describe the most restrictive policy: the smallest share of its quota left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sluice.errors import RateLimited
from sluice.limits.backend import WINDOW_SECONDS, Policy, State

Headers = list[tuple[bytes, bytes]]
_ceil = math.ceil


def policy_item(policy: Policy) -> str:
    """One `RateLimit-Policy` list member."""
    if policy.concurrent:
        return f'"{policy.name}";q={policy.quota};qu="concurrent-requests"'
    unit = "" if policy.unit == "requests" else f';qu="{policy.unit}"'
    return f'"{policy.name}";q={policy.quota}{unit};w={WINDOW_SECONDS}'


def tightest(states: Sequence[State]) -> State:
    """The state with the smallest share of its quota left (the longest reset on a tie)."""
    found = states[0]
    share = found.remaining / found.policy.quota
    for state in states[1:]:
        other = state.remaining / state.policy.quota
        if other < share or (other == share and state.reset > found.reset):
            found, share = state, other
    return found


_POLICY_LINES: dict[tuple[Policy, ...], bytes] = {}
"""`RateLimit-Policy` values by the policies they list: the same few sets on every request, so built once."""
_MAX_POLICY_LINES = 10_000


def policy_line(policies: tuple[Policy, ...]) -> bytes:
    """The `RateLimit-Policy` value listing `policies`."""
    line = _POLICY_LINES.get(policies)
    if line is None:
        if len(_POLICY_LINES) >= _MAX_POLICY_LINES:  # per-address policies: one set per client
            _POLICY_LINES.clear()
        line = _POLICY_LINES[policies] = ", ".join(policy_item(policy) for policy in policies).encode()
    return line


def limit_headers(states: Sequence[State], shown: State | None = None, line: bytes | None = None) -> Headers:
    """The five headers for `states`; `shown` (default: the tightest) is the one `RateLimit` reports; `line` is
    their `RateLimit-Policy` value when the caller has it built (`Grant` does)."""
    policy, left, seconds = shown or (states[0] if len(states) == 1 else tightest(states))
    reset = b"%d" % _ceil(seconds)
    remaining = b"%d" % left
    return [
        (b"ratelimit-policy", line or policy_line(tuple([s.policy for s in states]))),
        (b"ratelimit", policy.label + b";r=" + remaining + b";t=" + reset),
        (b"x-ratelimit-limit", policy.quota_text),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", reset),
    ]


class Throttled(RateLimited):
    """A request refused by a rate or concurrency limit: 429 with `Retry-After` and the rate-limit headers."""

    def __init__(self, message: str, *, retry_after: float, type: str, headers: Headers) -> None:
        super().__init__(message, retry_after=retry_after, type=type)
        self.headers = {"retry-after": str(max(1, math.ceil(retry_after))),
                        **{name.decode(): value.decode() for name, value in headers}}


def throttled(states: Sequence[State], violated: Policy, retry_after: float, subject: str) -> Throttled:
    """The error for a refusal by `violated`; `subject` says whose limit it is (`this API key`, …)."""
    shown = State(violated, 0, retry_after)
    if violated.concurrent:
        message = f"Too many concurrent requests for {subject} (at most {violated.quota}). Retry when one ends."
        kind = "requests"
    else:
        kind = "tokens" if violated.unit == "tokens" else "requests"
        message = (f"Rate limit reached for {subject}: {violated.quota} {kind} per minute. "
                   f"Please try again in {retry_after:.1f}s.")
    headers = limit_headers([shown if s.policy == violated else s for s in states], shown)
    return Throttled(message, retry_after=retry_after, type=kind, headers=headers)
