"""`data_of`, the front doors' reader of an upstream's reads: the payloads the SSE decoder would give, `[DONE]` and
empty data left out, for whole `data:` events read one or many at a time and for any SSE stream split anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluice.streaming import SSEDecoder, data_of
from tests.unit.test_sse_properties import PROPERTIES, events, line_text, split, wire


def decoded(reads: list[bytes]) -> list[str]:
    """What the decoder reads in `reads`, as `data_of` should give it."""
    decoder = SSEDecoder()
    return [event.data for read in reads for event in decoder.feed(read) if event.data and event.data != "[DONE]"]


def read_by_data_of(reads: list[bytes]) -> list[str]:
    decoder = SSEDecoder()
    found = [data_of(decoder, read) for read in reads]
    return [item.decode() if isinstance(item, bytes) else item for items in found for item in items]


payloads = st.one_of(line_text, st.sampled_from(["", "[DONE]", " {}", '{"a":1}']))


@PROPERTIES
@given(st.lists(payloads, max_size=6), st.lists(st.integers(0, 6), max_size=4), st.data())
def test_whole_data_events_read_as_the_decoder_reads_them(items: list[str], groups: list[int],
                                                          data: st.DataObject) -> None:
    """An OpenAI upstream's reads: whole `data: …` events, one a read or several together."""
    wire_events = [f"data: {item}\n\n".encode() for item in items]
    bounds = sorted({min(group, len(wire_events)) for group in groups})
    reads = [b"".join(wire_events[start:end]) for start, end in
             zip([0, *bounds], [*bounds, len(wire_events)], strict=True)]
    assert read_by_data_of(reads) == decoded(reads)
    cuts = data.draw(st.lists(st.integers(0, 200), max_size=4))
    raw = b"".join(wire_events)
    assert read_by_data_of(split(raw, cuts)) == decoded([raw])


@PROPERTIES
@given(st.lists(events, max_size=5), st.data())
def test_any_stream_split_anywhere_reads_as_the_decoder_reads_it(batch: list[object], data: st.DataObject) -> None:
    raw, _ = data.draw(wire(batch))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    assert read_by_data_of(split(raw, cuts)) == decoded([raw])
