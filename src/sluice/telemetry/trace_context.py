"""W3C trace context for the request path: the ids of a request's spans, chosen before the upstream call.

The spans themselves are built after the request, off the hot path (`telemetry/tracing.py`), with exactly
these ids, so the `traceparent` sent upstream names the upstream span Phoenix will show. This module imports
nothing heavy: the hot path pays one draw of random bits (`ids.py`) and, when the caller sent one, one regex match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sluice.ids import random_hex

# version-traceid-parentid-flags; a future version may append fields after a dash (W3C trace-context §3.2).
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


@dataclass(slots=True)
class TraceIds:
    """A request's place in a trace, as lowercase hex: the trace, the caller's span (None when the request
    starts the trace), the gateway's server span and the span of its upstream call."""

    trace_id: str
    parent_span_id: str | None
    server_span_id: str
    upstream_span_id: str
    sampled: bool = True
    nested: bool = False
    """A call made inside another of the gateway's requests (a project's step): only its upstream span is
    written, as a child of `parent_span_id`, that request's server span."""

    @classmethod
    def from_traceparent(cls, header: bytes | None) -> TraceIds:
        """Continue the caller's trace when `header` is a valid `traceparent`, else start a new one."""
        fresh = random_hex(256)
        if header:
            match = _TRACEPARENT.fullmatch(header.strip())
            if match and _valid(match):
                sampled = bool(int(match.group(4), 16) & 1)
                return cls(match.group(2).decode(), match.group(3).decode(), fresh[32:48], fresh[48:], sampled)
        return cls(fresh[:32], None, fresh[32:48], fresh[48:])

    def child(self) -> TraceIds:
        """The ids of a call made on behalf of this request: same trace, parented on this server span."""
        fresh = random_hex(128)
        return TraceIds(self.trace_id, self.server_span_id, fresh[:16], fresh[16:], self.sampled, nested=True)

    def traceparent_for_upstream(self) -> str:
        """The `traceparent` header for the upstream call: this trace, the upstream span as parent."""
        return f"00-{self.trace_id}-{self.upstream_span_id}-{'01' if self.sampled else '00'}"

    def as_tuple(self) -> tuple[str, str | None, str, str, bool, bool]:
        return self.trace_id, self.parent_span_id, self.server_span_id, self.upstream_span_id, self.sampled, \
            self.nested


def _valid(match: re.Match[bytes]) -> bool:
    version, trace_id, parent, _flags, rest = match.groups()
    if version == b"ff" or trace_id == _ZERO_TRACE or parent == _ZERO_SPAN:
        return False
    return version != b"00" or rest is None
