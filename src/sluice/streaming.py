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


class NotSSE(ValueError):
    """A line a strict `SSEDecoder` refused: not UTF-8, or not a comment, `data`, `event`, `id` or `retry` field."""

    def __init__(self, line: bytes) -> None:
        super().__init__("not a server-sent events line")
        self.line = line


SSE_FIELDS = frozenset({"data", "event", "id", "retry"})


class SSEDecoder:
    """Turns arbitrary byte chunks into complete events, keeping partial lines between calls; `strict` raises
    NotSSE for a line no SSE stream should have (SSE readers ignore unknown fields, so from an upstream such a
    line means the body is something else)."""

    def __init__(self, *, strict: bool = False) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._strict = strict
        self._after_cr = False

    @property
    def pending(self) -> bool:
        """Whether a line or an event has begun and not ended."""
        return bool(self._buffer.strip() or self._event or self._data)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._after_cr or b"\r" in chunk:
            chunk = self._lf_endings(chunk)
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return events
            raw = self._buffer[:end].rstrip(b"\r")
            self._buffer = self._buffer[end + 1:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if self._strict:
                    raise NotSSE(raw) from None
                raise
            event = self._line(line)
            if event is not None:
                events.append(event)
            elif self._strict and line and not line.startswith(":") and line.partition(":")[0] not in SSE_FIELDS:
                raise NotSSE(raw)

    def _lf_endings(self, chunk: bytes) -> bytes:
        """`chunk` with the spec's other line ends (CRLF, a lone CR) as LF; a CRLF split between two chunks stays
        one line end."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if chunk.endswith(b"\r"):
            self._after_cr = True
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

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


def data_of(decoder: SSEDecoder, chunk: bytes) -> list[bytes | str]:
    """The `data` of each event `chunk` completes, `[DONE]` left out. A checked OpenAI stream's chunks are whole
    events of one `data: …` line each: read by splitting, without the decoder (a fifth of its cost), when nothing
    is pending; anything else goes through the decoder."""
    if chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and b"\r" not in chunk and not decoder.pending:
        if chunk.find(b"\n") == len(chunk) - 2:  # one event: most reads of a streaming upstream
            return [] if chunk == DONE_EVENT or len(chunk) == 8 else [chunk[6:-2]]
        events = chunk[:-2].split(b"\n\n")
        if all(event[:6] == b"data: " and b"\n" not in event for event in events):
            return [event[6:] for event in events if event != b"data: [DONE]" and len(event) > 6]
    return [event.data for event in decoder.feed(chunk) if event.data and event.data != "[DONE]"]


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
