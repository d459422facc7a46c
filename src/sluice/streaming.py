"""Stream framing: the SSE decoder for upstream streams, SSE and NDJSON encoders, and stream-mode negotiation.

Inside Sluice a stream is OpenAI SSE bytes. A caller may ask for another framing with `?stream_mode=` (wins)
or `X-Stream-Mode`: `sse` (text/event-stream), `ndjson` (application/x-ndjson: one JSON object per line, no
`[DONE]`, an error as a final `{"error": {...}}` line) or `json` (one complete body).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import parse_qsl

import orjson

from sluice.errors import GatewayError, InvalidRequest

StreamMode = Literal["sse", "ndjson", "json"]
STREAM_MODES: dict[str, StreamMode] = {mode: mode for mode in get_args(StreamMode)}

DONE_EVENT = b"data: [DONE]\n\n"
SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
NDJSON_TYPE = "application/x-ndjson"
NDJSON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", NDJSON_TYPE.encode()),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


@dataclass(slots=True)
class ServerSentEvent:
    """One decoded event: its `event:` name (default "message") and its joined `data:` lines."""

    event: str
    data: str


class SSEDecoder:
    """Turns arbitrary byte chunks into complete events, keeping partial lines between calls."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return events
            line = self._buffer[:end].rstrip(b"\r").decode("utf-8")
            self._buffer = self._buffer[end + 1:]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def encode_data(payload: object) -> bytes:
    """One `data:` event carrying `payload` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(error: GatewayError) -> bytes:
    """The event that ends a broken stream; OpenAI's SDK raises APIError when it reads it."""
    return encode_data(error.to_dict())


def requested_mode(query_string: bytes, headers: Mapping[bytes, bytes]) -> StreamMode | None:
    """The stream mode the caller asked for (`?stream_mode=` wins over `X-Stream-Mode`), or None if neither."""
    if query_string and b"stream_mode=" in query_string:
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name == "stream_mode":
                return stream_mode(value)
    header = headers.get(b"x-stream-mode")
    return None if header is None else stream_mode(header.decode("latin-1"))


def stream_mode(value: str) -> StreamMode:
    """`value` as a StreamMode, or InvalidRequest naming the allowed ones."""
    mode = STREAM_MODES.get(value.strip().lower())
    if mode is not None:
        return mode
    raise InvalidRequest(f"Unknown stream mode {value!r}; use one of: sse, ndjson, json.", param="stream_mode",
                         code="invalid_stream_mode")


async def ndjson_lines(events: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """Re-frame an SSE byte stream as NDJSON: each event's JSON data on its own line, `[DONE]` dropped.

    Each upstream read that completes at least one event is yielded at once, so lines flush as chunks arrive.
    """
    decoder = SSEDecoder()
    try:
        async for chunk in events:
            lines = b"".join(ndjson_line(event.data) for event in decoder.feed(chunk))
            if lines:
                yield lines
    finally:
        await events.aclose()


def ndjson_line(data: str) -> bytes:
    """One event's data as an NDJSON line (empty for `[DONE]`); multi-line data is re-encoded onto one line."""
    if not data or data == "[DONE]":
        return b""
    if "\n" in data:
        return orjson.dumps(orjson.loads(data)) + b"\n"
    return data.encode() + b"\n"


def encode_line(payload: object) -> bytes:
    """One NDJSON line carrying `payload`."""
    return orjson.dumps(payload) + b"\n"


def ndjson_error_ending(tail: bytes, error: GatewayError) -> bytes:
    """The line that ends a broken NDJSON stream, after a newline if `tail` left a line half-sent."""
    return (b"" if tail.endswith(b"\n") else b"\n") + encode_line(error.to_dict())
