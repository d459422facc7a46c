"""The translators' byte-level fast path for ordinary text chunks (frontdoors/text_chunks.py): a stream read by
the doors (`ChatReads`) must give the caller exactly the bytes the long way (every chunk parsed, then fed) gives,
for any chunk bytes: escapes of every kind, non-ASCII, `\\u2028`, quotes, backslashes, unusual members, broken
JSON, invalid UTF-8."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.frontdoors import responses_stream
from sluice.frontdoors.chat_reads import ChatReads
from sluice.frontdoors.messages_stream import ChatToMessagesStream
from sluice.frontdoors.responses_stream import ChatToResponsesStream
from sluice.frontdoors.text_chunks import TextChunks
from sluice.stream_reader import text_piece
from sluice.streaming import SSEDecoder, data_of

PROPERTIES = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
REQUEST: dict[str, Any] = {"model": "gpt-x", "input": "hi", "store": False, "stream": True}
HEADS = [b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-x",',
         b'{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp",'
         b'"service_tier":"default",',
         b'{"id":"c","usage":null,', b'{"id":"c","usage":{"prompt_tokens":1},', b'{"id":"c\\"","choices":[],',
         b'{"id": "c", ', b'{"error":{"message":"x"},', b'{', b'{"id":"c"', b'']
TAILS = [b'},"finish_reason":null}]}', b'},"logprobs":null,"finish_reason":null}],"usage":null}',
         b'},"logprobs":null,"finish_reason":null}]}', b'},"finish_reason":null}],"usage":null}',
         b'},"finish_reason":null}],"usage":null,"obfuscation":"aB3_-"}', b'},"finish_reason":"stop"}]}',
         b'},"finish_reason":null}]', b'},"finish_reason":null},{"index":1,"delta":{}}]}',
         b'},"finish_reason":null}],"usage":{"completion_tokens":2}}', b',"role":"assistant"},"finish_reason":null}]}',
         b'},"logprobs":null,"finish_reason":"length"}],"usage":null}', b'},"finish_reason":"tool_calls"}]}',
         b'},"finish_reason":"content_filter"}],"usage":null}', b'},"finish_reason":"Stop"}]}',
         b'},"finish_reason":""}]}', b'},"finish_reason":"stop"}],"usage":{"completion_tokens":2}}',
         b'},"finish_reason":"st\\u006fp"}]}']
TEXTS = st.one_of(st.text(max_size=6), st.sampled_from(["tok ", "é", "\u2028", '"', "\\", "\x00\x1f\x7f", "😀", "/"]))


def encodings(text: str, odd: bytes) -> list[bytes]:
    """`text` as JSON string literals the way different servers write them (orjson's is the fast path's)."""
    return [orjson.dumps(text), json.dumps(text).encode(), json.dumps(text, ensure_ascii=False).encode(),
            json.dumps(text).encode().upper().replace(b"\\U", b"\\u"), b'"' + text.replace("/", "\\/").encode() + b'"',
            b'"' + text.encode("utf-8", "surrogatepass") + b'"', b'"' + text.encode() + odd + b'"']


ODD = [b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xc0\x80", b"\\/", b"\\u00e9", b"\\u00E9", b"\\u001F", b"\\u2028",
       b"\\ud83d\\ude00", b"\\ud83d", b"\\x", b"\\", b"\t", b"\\u000a", b"\\u0008", b"\\u000c", b"\\u007f", b"\\u0000",
       b"\\u001f", b"\\n", b"\\b", b"\\f", b"\\r", b"\\t", b'\\"', b"\\\\", b"\\n\xff", b"\\t\xed\xa0\x80", b"\xa0",
       b"\xc2\xa0", b"\\n\xc2\xa0", b"\xe2\x80\xa8\\n", b'\\"\xff', b'\\"\xed\xa0\x80']
"""Pieces of string literal that are invalid, or valid and not as orjson writes them, or as it writes them."""


@st.composite
def reads(draw: st.DrawFn) -> bytes:
    """One upstream read: usually one ordinary or nearly ordinary text chunk event, sometimes something else."""
    text = draw(TEXTS)
    literal = draw(st.sampled_from(encodings(text, draw(st.sampled_from(ODD)))))
    usual = draw(st.integers(0, 3)) > 0
    payload = (draw(st.sampled_from(HEADS[:2] if usual else HEADS))
               + b'"choices":[{"index":0,"delta":{"content":' + literal + draw(st.sampled_from(TAILS[:5] if usual
                                                                                              else TAILS)))
    if draw(st.integers(0, 9)) == 0:  # a byte changed anywhere
        at = draw(st.integers(0, len(payload)))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1:]
    read = b"data: " + payload + b"\n\n"
    return draw(st.sampled_from([read, read, read, read, b"data: [DONE]\n\n", read[:len(read) // 2],
                                 read + read, b": ping\n\n" + read]))


FIRST_DELTAS = [b'{"role":"assistant","content":', b'{"content":', b'{"role":"user","content":',
                b'{"role":"assistant","refusal":null,"content":']
"""How a stream's first chunk may begin its delta: the fast path's two forms, and others."""


@st.composite
def first_reads(draw: st.DrawFn) -> bytes:
    """A stream's first read: a chunk with the role (or not) and a text (or none), any head, any tail."""
    text = draw(TEXTS)
    literal = draw(st.sampled_from(encodings(text, draw(st.sampled_from(ODD)))))
    payload = (draw(st.sampled_from(HEADS)) + b'"choices":[{"index":0,"delta":' + draw(st.sampled_from(FIRST_DELTAS))
               + literal + draw(st.sampled_from(TAILS)))
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(payload)))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1:]
    return b"data: " + payload + draw(st.sampled_from([b"\n\n", b"\n\n", b"\r\n\r\n", b"\n"]))


def first_chunk(head: bytes) -> bytes:
    """A stream's first chunk: the role and a first text, which opens the text block or part."""
    return b"data: " + head + b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},' \
                              b'"finish_reason":null}]}\n\n'


Translator = ChatToMessagesStream | ChatToResponsesStream


def door_way(stream: list[bytes], translator: Translator) -> list[bytes | str]:
    """What the door sends for these reads (`ChatReads`, as `relay` runs it), or the exception that ends it."""
    reads = ChatReads(translator.feed, translator.feed_text)
    try:
        return [*[out for item in stream if (out := reads.read(item))], translator.finish()]
    except Exception as exc:  # noqa: BLE001 - the long way's failure is the expected outcome too
        return [type(exc).__name__]


def long_way(stream: list[bytes], translator: Translator) -> list[bytes | str]:
    """The reads without the fast path: every event decoded, parsed and fed."""
    decoder = SSEDecoder()
    try:
        outs = [b"".join([translator.feed(orjson.loads(payload)) for payload in data_of(decoder, item)])
                for item in stream]
        return [*[out for out in outs if out], translator.finish()]
    except Exception as exc:  # noqa: BLE001
        return [type(exc).__name__]


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Item ids, message ids and times that repeat, so two runs of one stream give the same bytes."""
    counter = itertools.count()

    def reset() -> None:
        nonlocal counter
        counter = itertools.count()

    monkeypatch.setattr(responses_stream, "new_item_id", lambda prefix: f"{prefix}_{next(counter)}")
    monkeypatch.setattr(responses_stream.time, "time", lambda: 1700000001.0)
    return reset


def assert_same_bytes(stream: list[bytes], reset: Callable[[], None]) -> None:
    """Both doors send what the long way gives for `stream` (and the Responses door keeps the same message)."""
    messages_door = door_way(stream, ChatToMessagesStream(model="gpt-x", message_id="msg_1"))
    assert messages_door == long_way(stream, ChatToMessagesStream(model="gpt-x", message_id="msg_1"))
    reset()
    fast = ChatToResponsesStream(request=REQUEST, response_id="resp_1", created_at=1700000000)
    responses_door = door_way(stream, fast)
    reset()
    slow = ChatToResponsesStream(request=REQUEST, response_id="resp_1", created_at=1700000000)
    assert responses_door == long_way(stream, slow)
    assert fast.final_message() == slow.final_message()


@PROPERTIES
@given(st.sampled_from(HEADS[:3]), st.lists(reads(), max_size=8))
def test_stream_bytes_are_the_long_way_s(fixed_ids: Callable[[], None], head: bytes, items: list[bytes]) -> None:
    assert_same_bytes([first_chunk(head), *items, b"data: [DONE]\n\n"], fixed_ids)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("odd", ODD)
def test_each_odd_piece_of_text_gives_the_long_way_s_bytes(fixed_ids: Callable[[], None], odd: bytes,
                                                           tail: bytes) -> None:
    read = b"data: " + HEADS[0] + b'"choices":[{"index":0,"delta":{"content":"a' + odd + b'b"' + tail + b"\n\n"
    assert_same_bytes([first_chunk(HEADS[0]), read, read, b"data: [DONE]\n\n"], fixed_ids)


@PROPERTIES
@given(st.sampled_from(HEADS), reads())
def test_a_recognised_text_is_the_chunk_s_text_as_orjson_writes_it(head: bytes, read: bytes) -> None:
    texts = TextChunks()
    texts.learn(first_chunk(head)[6:-2])
    text = texts.text_of(read)
    if text is not None:
        chunk = orjson.loads(read[6:-2])
        choice = chunk["choices"][0]
        unfinished = {**chunk, "choices": [{**choice, "finish_reason": None}]}
        assert b'"' + text + b'"' == orjson.dumps(text_piece(unfinished))
        assert texts.finish == choice["finish_reason"]


@given(st.sampled_from(HEADS[:2]), st.text(min_size=1, max_size=12))
def test_the_usual_chunk_is_recognised(head: bytes, text: str) -> None:
    """What OpenAI, the mock provider and the bench upstream send takes the fast path."""
    texts = TextChunks()
    texts.learn(first_chunk(head)[6:-2])
    for tail in TAILS[:4]:
        read = b"data: " + head + b'"choices":[{"index":0,"delta":{"content":' + orjson.dumps(text) + tail + b"\n\n"
        assert texts.text_of(read) == orjson.dumps(text)[1:-1]


@PROPERTIES
@given(first_reads(), st.lists(reads(), max_size=5))
def test_any_first_read_gives_the_long_way_s_bytes(fixed_ids: Callable[[], None], first: bytes,
                                                   items: list[bytes]) -> None:
    """The first read teaches the fast path the stream's leading members when it is a text chunk; whatever it is,
    and whatever follows, the doors send what the long way gives."""
    assert_same_bytes([first, *items, b"data: [DONE]\n\n"], fixed_ids)


@pytest.mark.parametrize("reason", ["stop", "length", "content_filter", "tool_calls"])
def test_a_last_text_chunk_s_finish_reason_is_kept(fixed_ids: Callable[[], None], reason: str) -> None:
    last = (b"data: " + HEADS[0] + b'"choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"'
            + reason.encode() + b'"}]}\n\n')
    texts = TextChunks()
    texts.learn(first_chunk(HEADS[0])[6:-2])
    assert texts.text_of(last) == b"end" and texts.finish == reason
    assert_same_bytes([first_chunk(HEADS[0]), last, b"data: [DONE]\n\n"], fixed_ids)


@PROPERTIES
@given(st.lists(reads(), max_size=6), st.sampled_from([None, "stop", "length", "content_filter"]),
       st.sampled_from([None, {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}]))
def test_the_text_only_ending_is_the_general_one(fixed_ids: Callable[[], None], items: list[bytes],
                                                 reason: str | None, usage: dict[str, int] | None) -> None:
    """A response of one message with one output text part ends from its template (`_text_ending`), byte for
    byte what the general ending writes."""
    stream = [first_chunk(HEADS[0]), *items]
    fast = ChatToResponsesStream(request=REQUEST, response_id="resp_1", created_at=1700000000)
    slow = ChatToResponsesStream(request=REQUEST, response_id="resp_1", created_at=1700000000)
    for translator in (fast, slow):
        fixed_ids()
        reads_ = ChatReads(translator.feed, translator.feed_text)
        for item in stream:
            try:
                reads_.read(item)
            except Exception:  # noqa: BLE001 - a broken read ends the stream: nothing to compare
                return
        translator._finish_reason = reason or translator._finish_reason
        translator._usage = usage
    part, item = fast._text, fast._current
    if part is None or len(fast._items) != 1 or item is None or item.parts[0] is not part:  # type: ignore[union-attr]
        return
    assert fast.finish() == slow._ending(responses_stream.status_for(slow._finish_reason))
    assert fast.final_message() == slow.final_message()
