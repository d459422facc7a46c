"""The one error family of Sluice and its mapping to OpenAI-shaped JSON error bodies.

GatewayError
├── InvalidRequest        400 invalid_request_error (bad JSON, schema violation)
├── AuthenticationFailed  401 invalid_api_key
├── PermissionDenied      403 permission_denied
├── NotFound              404 (unknown model or route)
├── RequestTimeout        408 request_timeout (the body did not arrive in time; the connection is closed)
├── PayloadTooLarge       413 request_too_large
├── RateLimited           429 rate_limit_exceeded (with Retry-After)
├── QuotaExceeded         429 insufficient_quota (the key's budget is spent for this period)
├── ServiceUnavailable    503 (a dependency the request needs, e.g. Redis with fail-closed limits, is down)
│   └── CircuitOpen       503 upstream_circuit_open (routing/breaker.py: the provider's breaker is open)
├── UpstreamError         the upstream answered with an error: its status, message and Retry-After are passed on
├── UpstreamProtocolError 502 upstream_protocol_error (a 200 whose body or stream is not the protocol)
├── UpstreamUnreachable   502 (connection refused, reset, DNS)
└── UpstreamTimeout       504 (connect, read or total timeout)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_tz
from typing import Any

import orjson


class GatewayError(Exception):
    """An error the gateway turns into an OpenAI-shaped response."""

    status = 500
    type = "server_error"
    code: str | None = None
    headers: Mapping[str, str] = {}
    """Extra response headers (e.g. `WWW-Authenticate`); set per instance, never mutated in place."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    headers = {"Connection": "close"}


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """A limit is exhausted; `retry_after` is the number of seconds until the request would pass."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, type: str | None = None) -> None:
        super().__init__(message, type=type)
        self.retry_after = retry_after


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamError(GatewayError):
    """The upstream answered with an error status; `status` and message are the upstream's."""

    type = "upstream_error"
    retry_after_header: str | None = None
    """The upstream's `Retry-After` header, as sent (the retry policy reads it); set by `keep_retry_after`."""

    def keep_retry_after(self, value: str | None) -> None:
        """Keep the upstream's `Retry-After`; on a 429 or 503 it is also the client's (see `client_retry_after`)."""
        self.retry_after_header = value
        shown = client_retry_after(value) if self.status in PASSED_RETRY_AFTER else None
        if shown is not None:
            self.headers = {"Retry-After": shown}


PASSED_RETRY_AFTER = frozenset({429, 503})
"""The statuses whose upstream `Retry-After` reaches the client (an Anthropic 529 reaches it as 503)."""


def client_retry_after(value: str | None) -> str | None:
    """An upstream's `Retry-After` as the client gets it: delay seconds rounded up to whole ones, an HTTP date as
    sent; None for anything else (never a header value the client could not parse)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return value if value.isascii() and value.isprintable() and parsedate_tz(value) is not None else None
    return str(math.ceil(seconds)) if 0 <= seconds < 1e9 else None


class UpstreamProtocolError(GatewayError):
    """The upstream answered 200 with something the protocol does not allow: a body that is not the reply's JSON,
    or a stream cut mid-event, ended before its last event, or with lines that are not server-sent events."""

    status = 502
    type = "upstream_error"
    code = "upstream_protocol_error"


class UpstreamUnreachable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


def internal_error() -> GatewayError:
    """The error shown for a bug: it never carries a stack trace or exception text to the client."""
    return GatewayError("The gateway failed to handle this request; see its logs.", code="internal_error")
