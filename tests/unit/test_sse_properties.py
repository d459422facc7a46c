"""Property tests of SSE framing (WHATWG "server-sent events"): `SSEDecoder` and the encoders in
`sluice/streaming.py`, and the stream reader's `sse_events`, over generated streams split at arbitrary bytes."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import UpstreamError
from sluice.stream_reader import sse_events
from sluice.streaming import (
    DONE_EVENT,
    ServerSentEvent,
    SSEDecoder,
    encode_data,
    encode_line,
    error_event,
    ndjson_line,
)

PROPERTIES = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# Text an SSE line may carry: anything but CR and LF (the line endings); NUL and non-ASCII included.
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
field_value = line_text.filter(lambda value: not value.startswith(" ")) | line_text.map(lambda value: " " + value)
endings = st.sampled_from(["\n", "\r\n", "\r"])
# No NUL: the stream reader reads it as U+FFFD (its own test below), the decoder and NDJSON keep it.
json_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Event:
    """One event as generated: its optional `event:` name, its `data:` lines, an `id:` and comments."""

    name: str | None
    data: tuple[str, ...]
    id: str | None
    comments: tuple[str, ...]

    def decoded(self) -> ServerSentEvent:
        """What the spec says a reader dispatches for it."""
        return ServerSentEvent(self.name or "message", "\n".join(self.data))


events = st.builds(
    Event,
    name=st.none() | line_text.filter(bool).filter(lambda name: not name.startswith(" ")),
    data=st.lists(line_text, min_size=1, max_size=4).map(tuple),
    id=st.none() | line_text,
    comments=st.lists(line_text, max_size=2).map(tuple),
)


@st.composite
def wire(draw: st.DrawFn, batch: list[Event] | None = None, ending: str | None = None, *, unknown: bool = True
         ) -> tuple[bytes, list[int]]:
    """A stream for generated events (with the field forms the spec allows: `data:x`, `data: x`, a bare `data`,
    comments anywhere, `unknown` fields) and, for each event, the offset just past the blank line that ends it."""
    batch = draw(st.lists(events, max_size=5)) if batch is None else batch
    out, ends = bytearray(), []

    def line(text: str) -> None:
        end = ending or draw(endings)
        if not text and end == "\n" and out.endswith(b"\r"):
            end = "\r\n"  # CR then an empty line's LF would be one CRLF
        out.extend((text + end).encode())

    if draw(st.booleans()):
        line(":" + draw(line_text))  # a comment before anything
    for event in batch:
        fields = [f"data{_sep(draw, value)}{value}" if value or draw(st.booleans()) else "data" for value in event.data]
        if event.name is not None:
            fields.insert(draw(st.integers(0, len(fields))), f"event{_sep(draw, event.name)}{event.name}")
        if event.id is not None:
            fields.insert(draw(st.integers(0, len(fields))), f"id:{event.id}")
        for comment in event.comments:
            fields.insert(draw(st.integers(0, len(fields))), ":" + comment)
        if unknown and draw(st.booleans()):
            fields.insert(draw(st.integers(0, len(fields))), "x-unknown: ignored")  # readers ignore other fields
        for field in fields:
            line(field)
        line("")
        ends.append(len(out))
    return bytes(out), ends


def _sep(draw: st.DrawFn, value: str) -> str:
    """`:` or `: ` before a value: a reader drops one leading space, so a value starting with one needs `: `."""
    return ": " if value.startswith(" ") or draw(st.booleans()) else ":"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


def decode(chunks: list[bytes], *, strict: bool = False) -> list[ServerSentEvent]:
    decoder = SSEDecoder(strict=strict)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


@PROPERTIES
@given(st.lists(events, max_size=5), st.sampled_from(["\n", "\r\n"]), st.data())
def test_events_decode_as_the_spec_says_wherever_chunks_split(batch: list[Event], ending: str, data: st.DataObject
                                                              ) -> None:
    raw, _ = data.draw(wire(batch, ending))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    expected = [event.decoded() for event in batch]
    assert decode([raw]) == expected
    assert decode(split(raw, cuts)) == expected
    assert decode([raw[i:i + 1] for i in range(len(raw))]) == expected


@PROPERTIES
@given(st.lists(events, max_size=5), st.data())
def test_the_strict_decoder_takes_every_stream_of_known_fields(batch: list[Event], data: st.DataObject) -> None:
    """`strict` (Anthropic's streams) refuses unknown fields only: any SSE stream of comments, `data`, `event` and
    `id` lines decodes as the lenient decoder does."""
    raw, _ = data.draw(wire(batch, unknown=False))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    assert decode(split(raw, cuts), strict=True) == [event.decoded() for event in batch]


@PROPERTIES
@given(st.lists(events, max_size=5), st.data())
def test_cr_lf_and_crlf_may_mix_in_one_stream(batch: list[Event], data: st.DataObject) -> None:
    """The spec's end-of-line is CRLF, LF or a lone CR, each line choosing its own; a CRLF split between two chunks
    is still one line end."""
    raw, _ = data.draw(wire(batch))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    assert decode(split(raw, cuts)) == [event.decoded() for event in batch]


@PROPERTIES
@given(st.lists(events, min_size=1, max_size=5), st.sampled_from(["\n", "\r\n"]), st.data())
def test_a_truncated_stream_yields_only_the_events_it_completed(batch: list[Event], ending: str,
                                                                data: st.DataObject) -> None:
    raw, ends = data.draw(wire(batch, ending))
    cut = data.draw(st.integers(0, len(raw)))
    completed = sum(1 for end in ends if end <= cut)
    got = decode(split(raw[:cut], data.draw(st.lists(st.integers(0, cut), max_size=4))))
    assert got == [event.decoded() for event in batch[:completed]]


@PROPERTIES
@given(st.lists(json_values, max_size=6), st.data())
def test_encoded_payloads_decode_back_to_themselves(payloads: list[object], data: st.DataObject) -> None:
    """`encode_data` → `SSEDecoder` → JSON is the identity; `[DONE]` and an error event end the stream as data."""
    error = UpstreamError("upstream broke", status=502)
    raw = b"".join(encode_data(payload) for payload in payloads) + error_event(error) + DONE_EVENT
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    decoded = decode(split(raw, cuts), strict=True)
    assert [event.event for event in decoded] == ["message"] * (len(payloads) + 2)
    assert [orjson.loads(event.data) for event in decoded[:-1]] == [*payloads, error.to_dict()]
    assert decoded[-1].data == "[DONE]"
    assert sse_events(split(raw, cuts)) == [*payloads, error.to_dict()]


@PROPERTIES
@given(st.lists(json_values, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.data())
def test_the_stream_reader_reads_any_framing_of_the_same_payloads(payloads: list[object], ending: str,
                                                                  pretty: bool, data: st.DataObject) -> None:
    """`sse_events` (request log, spans, budgets) finds the same payloads whatever the line endings, with events
    whose JSON is spread over several `data:` lines, comments between events, and any chunking."""
    blocks = []
    for payload in payloads:
        text = orjson.dumps(payload, option=orjson.OPT_INDENT_2 if pretty else 0).decode()
        lines = [f"data: {line}" for line in text.split("\n")]
        if data.draw(st.booleans()):
            lines.insert(0, ": keep-alive")
        blocks.append(ending.join(lines) + ending * 2)
    raw = ("".join(blocks) + "data: [DONE]" + ending * 2).encode()
    assert sse_events(split(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))) == payloads


@PROPERTIES
@given(st.lists(json_values, max_size=6), st.data())
def test_ndjson_lines_carry_each_events_payload(payloads: list[object], data: st.DataObject) -> None:
    """NDJSON re-framing: one line per event's JSON (multi-line data put on one line), `[DONE]` dropped."""
    raw = b"".join(b"data: " + orjson.dumps(payload, option=orjson.OPT_INDENT_2).replace(b"\n", b"\ndata: ") + b"\n\n"
                   for payload in payloads) + DONE_EVENT
    decoded = decode(split(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=6))))
    lines = b"".join(ndjson_line(event.data) for event in decoded)
    assert lines.count(b"\n") == len(payloads) and (not lines or lines.endswith(b"\n"))
    assert [orjson.loads(line) for line in lines.splitlines()] == payloads
    assert lines == b"".join(encode_line(payload) for payload in payloads)


@PROPERTIES
@given(st.lists(json_text, min_size=1, max_size=4), st.data())
def test_the_stream_reader_reads_a_nul_as_the_replacement_character(pieces: list[str], data: st.DataObject) -> None:
    """The request log stores what `sse_events` reads, and PostgreSQL refuses NUL in text and JSONB."""
    payload = {"content": "\x00".join(pieces)}
    raw = encode_data(payload) + DONE_EVENT
    assert sse_events(split(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))) == [
        {"content": "\ufffd".join(pieces)}]
    assert [orjson.loads(event.data) for event in decode([raw])[:1]] == [payload]
