"""RateLimit / RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-11), X-RateLimit-* and the 429 error."""

from __future__ import annotations

from sluice.limits.backend import Policy, State
from sluice.limits.headers import limit_headers, throttled

RPM = Policy("key", "k:r", 60)
TOKENS = Policy("model-tokens", "m:t", 1000, "tokens")
SLOTS = Policy("ip-concurrency", "i:c", 4, "concurrent-requests")


def test_every_policy_is_listed_and_the_tightest_is_reported() -> None:
    headers = dict(limit_headers([State(RPM, 30, 30.2), State(TOKENS, 100, 54.0), State(SLOTS, 3, 0.0)]))
    assert headers[b"ratelimit-policy"] == (b'"key";q=60;w=60, "model-tokens";q=1000;qu="tokens";w=60, '
                                            b'"ip-concurrency";q=4;qu="concurrent-requests"')
    assert headers[b"ratelimit"] == b'"model-tokens";r=100;t=54'
    assert (headers[b"x-ratelimit-limit"], headers[b"x-ratelimit-remaining"], headers[b"x-ratelimit-reset"]) == \
        (b"1000", b"100", b"54")


def test_a_refusal_reports_the_violated_policy_and_a_whole_retry_after() -> None:
    error = throttled([State(RPM, 0, 60.0), State(TOKENS, 900, 6.0)], RPM, 0.4, "this API key")
    assert (error.status, error.code, error.type) == (429, "rate_limit_exceeded", "requests")
    assert error.headers["retry-after"] == "1"
    assert error.headers["ratelimit"] == '"key";r=0;t=1'
    assert error.to_dict()["error"]["message"].startswith("Rate limit reached for this API key: 60 requests")


def test_token_and_concurrency_refusals() -> None:
    assert throttled([State(TOKENS, 0, 80.0)], TOKENS, 20.5, "model 'x'").type == "tokens"
    busy = throttled([State(SLOTS, 0, 0.0)], SLOTS, 1.0, "your address")
    assert busy.type == "requests" and "concurrent" in busy.message
