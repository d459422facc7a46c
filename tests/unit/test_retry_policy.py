"""Retry pauses: backoff bounds, Retry-After parsing and the cap, and which errors are retried or count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from sluice.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from sluice.routing.options import RetryOptions
from sluice.routing.retry import RetryPolicy, is_failure, retry_after_seconds, retry_reason


def upstream_error(status: int, retry_after: str | None = None, code: str | None = None) -> UpstreamError:
    error = UpstreamError("upstream said no", status=status, code=code)
    error.retry_after_header = retry_after
    return error


def test_backoff_doubles_up_to_the_ceiling_with_jitter() -> None:
    policy = RetryPolicy(RetryOptions(backoff_initial_seconds=0.2, backoff_max_seconds=1.0))
    for retry, step in ((1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)):
        pauses = [policy.backoff(retry) for _ in range(200)]
        assert all(step / 2 <= pause <= step for pause in pauses)
        assert len(set(pauses)) > 1


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(RetryOptions(max_retry_after_seconds=5))
    assert policy.delay(1, upstream_error(429, "2")) == 2.0
    assert policy.delay(1, upstream_error(503, "0.5")) == 0.5
    assert policy.delay(1, upstream_error(429, "6")) is None
    assert policy.delay(1, upstream_error(429)) is None  # a 429 that does not say when: maybe a spent quota
    assert policy.delay(1, upstream_error(503)) is not None


def test_retry_after_seconds_reads_delays_and_http_dates() -> None:
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds(" 3 ") == 3.0 and retry_after_seconds("-4") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_seconds(later) or 0) <= 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_what_is_retried_and_what_counts_against_the_breaker() -> None:
    unreachable, timeout = UpstreamUnreachable("x"), UpstreamTimeout("x")
    assert [retry_reason(e) for e in (unreachable, timeout)] == ["unreachable", "timeout"]
    assert [retry_reason(upstream_error(s)) for s in (429, 500, 502, 503, 504)] == \
        ["http_429", None, "http_502", "http_503", "http_504"]
    assert retry_reason(upstream_error(429, code="insufficient_quota")) is None
    assert retry_reason(upstream_error(400)) is None and retry_reason(InvalidRequest("x")) is None
    assert is_failure(unreachable) and is_failure(timeout) and is_failure(upstream_error(500))
    assert not is_failure(upstream_error(429)) and not is_failure(upstream_error(404))
    assert not is_failure(InvalidRequest("x"))
