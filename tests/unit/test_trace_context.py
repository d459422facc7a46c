"""W3C traceparent: accepted from callers when valid, a new trace otherwise, and the header sent upstream."""

from __future__ import annotations

import re

import pytest

from sluice.telemetry.trace_context import TraceIds
from tests.telemetry_support import CALLER_SPAN, CALLER_TRACE, CALLER_TRACEPARENT

HEX = re.compile(r"[0-9a-f]+")


def test_a_valid_traceparent_is_continued() -> None:
    ids = TraceIds.from_traceparent(CALLER_TRACEPARENT.encode())
    assert (ids.trace_id, ids.parent_span_id, ids.sampled) == (CALLER_TRACE, CALLER_SPAN, True)
    assert len({ids.server_span_id, ids.upstream_span_id, CALLER_SPAN}) == 3
    assert ids.traceparent_for_upstream() == f"00-{CALLER_TRACE}-{ids.upstream_span_id}-01"


def test_no_header_starts_a_new_sampled_trace() -> None:
    ids = TraceIds.from_traceparent(None)
    assert ids.parent_span_id is None and ids.sampled
    assert len(ids.trace_id) == 32 and len(ids.server_span_id) == len(ids.upstream_span_id) == 16
    assert all(HEX.fullmatch(value) for value in (ids.trace_id, ids.server_span_id, ids.upstream_span_id))
    assert TraceIds.from_traceparent(None).trace_id != ids.trace_id


def test_the_callers_sampling_decision_is_kept() -> None:
    ids = TraceIds.from_traceparent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00".encode())
    assert not ids.sampled and ids.traceparent_for_upstream().endswith("-00")


def test_a_future_version_may_carry_more_fields() -> None:
    ids = TraceIds.from_traceparent(f"cc-{CALLER_TRACE}-{CALLER_SPAN}-01-what-ever".encode())
    assert ids.trace_id == CALLER_TRACE


@pytest.mark.parametrize("header", [
    b"garbage",
    f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01".encode(),  # version ff is invalid
    f"00-{'0' * 32}-{CALLER_SPAN}-01".encode(),  # all-zero trace id
    f"00-{CALLER_TRACE}-{'0' * 16}-01".encode(),  # all-zero parent
    f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01".encode(),  # upper case is not allowed
    f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra".encode(),  # version 00 has exactly four fields
])
def test_an_invalid_traceparent_starts_a_new_trace(header: bytes) -> None:
    ids = TraceIds.from_traceparent(header)
    assert ids.parent_span_id is None and ids.trace_id != CALLER_TRACE
