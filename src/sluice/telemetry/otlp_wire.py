"""OTLP trace data in protobuf wire format, written directly: spans, their attributes and events, and the request.

Hand-written because measurement showed the library path to be the span exporter's main cost: per exchange (two
spans, ~32 attributes) the OpenTelemetry SDK's spans took ~80 µs and its generic OTLP encoder ~200 µs (a Python
`KeyValue` message per attribute), more than the gateway's whole request (docs/benchmarks.md, "Tracing").
The messages are those of `opentelemetry/proto/trace/v1/trace.proto`; the tests decode these bytes with the
official generated classes. Only what Sluice's spans use is written: no links, no trace state.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
SPAN_FLAGS_SAMPLED = 0x01
SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE = 0x100
SPAN_FLAGS_CONTEXT_IS_REMOTE = 0x200

_FIXED64_PACK = struct.Struct("<Q").pack
_DOUBLE_PACK = struct.Struct("<d").pack
_FIXED32_PACK = struct.Struct("<I").pack
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]

# Field tags (field number << 3 | wire type), all one byte here: 2 = length-delimited, 0 = varint, 1 = 64-bit,
# 5 = 32-bit. Named by message and field.
_KV_KEY, _KV_VALUE = b"\x0a", b"\x12"
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE = b"\x0a", b"\x10", b"\x18", b"\x21"
_ANY_ARRAY, _ANY_BYTES = b"\x2a", b"\x3a"
_ARRAY_VALUES = b"\x0a"
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT_ID, _SPAN_NAME = b"\x0a", b"\x12", b"\x22", b"\x2a"
_SPAN_KIND, _SPAN_START, _SPAN_END, _SPAN_ATTRIBUTE, _SPAN_EVENT = b"\x30", b"\x39", b"\x41", b"\x4a", b"\x5a"
_SPAN_STATUS, _SPAN_FLAGS = b"\x7a", b"\x85\x01"
_EVENT_TIME, _EVENT_NAME = b"\x09", b"\x12"
_STATUS_MESSAGE, _STATUS_CODE = b"\x12", b"\x18"
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPAN, _SCOPE_NAME = b"\x0a", b"\x12", b"\x0a"
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_ATTRIBUTE = b"\x0a", b"\x12", b"\x0a"
_REQUEST_RESOURCE_SPANS = b"\x0a"


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(payload)
    return tag + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, str):
        return _field(_ANY_STRING, value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool):  # before int: a bool is an int
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE_PACK(value)
    if isinstance(value, bytes):
        return _field(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        return _field(_ANY_ARRAY, b"".join(_field(_ARRAY_VALUES, _any_value(item)) for item in value))
    return _field(_ANY_STRING, str(value).encode("utf-8", "surrogatepass"))


_KEYS: dict[str, bytes] = {}
_PAIRS: dict[bytes, dict[tuple[str, str | int], bytes]] = {}
_PAIR_LENGTH = 64
_PAIR_CACHE = 4096


def attributes(values: Mapping[str, Any], tag: bytes) -> bytes:
    """`values` as repeated `KeyValue` fields tagged `tag`; None values are left out.

    Most of a span's ~35 attributes are short strings and counts that repeat from one exchange to the next (span
    kinds, models, providers, roles, routes, token counts): those come encoded from a bounded cache; other strings
    are written inline (through `_field`, the three nested fields cost ~1 µs an attribute in calls)."""
    out = bytearray()
    keys = _KEYS
    pairs = _PAIRS.get(tag)
    if pairs is None:
        pairs = _PAIRS[tag] = {}
    for name, value in values.items():
        kind = type(value)
        if kind is str and len(value) <= _PAIR_LENGTH or kind is int:
            encoded = pairs.get((name, value))
            if encoded is None:
                if len(pairs) >= _PAIR_CACHE:
                    pairs.clear()
                encoded = pairs[(name, value)] = _attribute(tag, _key(keys, name), value)
            out += encoded
        elif kind is str:
            data = value.encode("utf-8", "surrogatepass")
            key = keys.get(name) or _key(keys, name)
            size = len(data)
            head = _ONE_BYTE[size] if size < 0x80 else _varint(size)
            inner = size + len(head) + 1  # the AnyValue: its string field
            value_head = _ONE_BYTE[inner] if inner < 0x80 else _varint(inner)
            entry = len(key) + 1 + len(value_head) + inner  # the KeyValue: its key, then its value field
            out += tag
            out += _ONE_BYTE[entry] if entry < 0x80 else _varint(entry)
            out += key
            out += _KV_VALUE
            out += value_head
            out += _ANY_STRING
            out += head
            out += data
        elif value is not None:
            out += _attribute(tag, keys.get(name) or _key(keys, name), value)
    return bytes(out)


def _key(keys: dict[str, bytes], name: str) -> bytes:
    key = keys.get(name)
    if key is None:
        key = keys[name] = _field(_KV_KEY, name.encode())
    return key


def _attribute(tag: bytes, key: bytes, value: Any) -> bytes:
    return _field(tag, key + _field(_KV_VALUE, _any_value(value)))


def span_attributes(values: Mapping[str, Any]) -> bytes:
    """Attributes encoded once for several spans (`span`'s `shared`)."""
    return attributes(values, _SPAN_ATTRIBUTE)


def span(*, trace_id: bytes, span_id: bytes, parent_span_id: bytes | None, parent_is_remote: bool, name: str,
         kind: int, start: int, end: int, attributes_: Mapping[str, Any], shared: bytes = b"",
         events: Iterable[tuple[str, int]] = (), error: str | None = None) -> bytes:
    """One `Span` message: 16- and 8-byte ids, times in Unix nanoseconds, `shared` attributes (`span_attributes`)
    before `attributes_`, `events` as (name, time); `error` sets the status to ERROR with that message (None leaves
    it unset)."""
    flags = SPAN_FLAGS_SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | (SPAN_FLAGS_CONTEXT_IS_REMOTE if parent_is_remote
                                                                     else 0)
    parts = [_field(_SPAN_TRACE_ID, trace_id), _field(_SPAN_ID, span_id)]
    if parent_span_id is not None:
        parts.append(_field(_SPAN_PARENT_ID, parent_span_id))
    parts += [_field(_SPAN_NAME, name.encode("utf-8", "surrogatepass")), _SPAN_KIND + _varint(kind),
              _SPAN_START + _FIXED64_PACK(start), _SPAN_END + _FIXED64_PACK(end),
              shared, attributes(attributes_, _SPAN_ATTRIBUTE)]
    for event_name, time in events:
        parts.append(_field(_SPAN_EVENT, _EVENT_TIME + _FIXED64_PACK(time) + _field(_EVENT_NAME, event_name.encode())))
    if error is not None:
        parts.append(_field(_SPAN_STATUS, _field(_STATUS_MESSAGE, error.encode("utf-8", "surrogatepass"))
                            + _STATUS_CODE + _varint(STATUS_ERROR)))
    parts.append(_SPAN_FLAGS + _FIXED32_PACK(flags))
    return _field(_SCOPE_SPANS_SPAN, b"".join(parts))  # as the `spans` field of ScopeSpans


def request(resource: Mapping[str, Any], scope_name: str, spans: Sequence[bytes]) -> bytes:
    """An `ExportTraceServiceRequest` carrying `spans` (as `span` returns them) for one resource and scope."""
    scope = _field(_SCOPE_SPANS_SCOPE, _field(_SCOPE_NAME, scope_name.encode()))
    resource_spans = (_field(_RESOURCE_SPANS_RESOURCE, attributes(resource, _RESOURCE_ATTRIBUTE))
                      + _field(_RESOURCE_SPANS_SCOPE_SPANS, scope + b"".join(spans)))
    return _field(_REQUEST_RESOURCE_SPANS, resource_spans)
