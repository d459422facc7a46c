"""An OpenAI-format upstream's stream reads fed to a front door's translator, one read in, its events out.

A read that is one ordinary text chunk goes to the translator's `feed_text` as its escaped text and finish reason
(see frontdoors/text_chunks.py), unless the translator cannot take it that way (a text block or part is neither
open nor the first thing of the stream); `data: [DONE]` is nothing to send; every other read is decoded
(`data_of`) and each chunk in it parsed and given to `feed`. The fast path's leading members are learnt from
reads of one event only: an upstream whose reads hold several events at a time never takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sluice.frontdoors.text_chunks import TextChunks
from sluice.streaming import DONE_EVENT, SSEDecoder, data_of

FeedText = Callable[[bytes, str | None], bytes | None]
"""A translator's events for an ordinary text chunk's escaped text and finish reason, or None (nothing changed):
the chunk goes to `feed` instead."""


class ChatReads:
    """Feeds one stream's reads to a translator (`feed` a parsed chunk, `feed_text` an ordinary chunk's escaped
    text and finish reason, or None to have it parsed)."""

    __slots__ = ("_decoder", "_texts", "_text_of", "_feed", "_feed_text", "_between")

    def __init__(self, feed: Callable[[dict[str, Any]], bytes], feed_text: FeedText) -> None:
        self._decoder: SSEDecoder | None = None
        """Made for the first read that goes the long way."""
        self._texts = TextChunks()
        self._text_of = self._texts.text_of
        self._feed = feed
        self._feed_text = feed_text
        self._between = True
        """No event is begun and not ended: the next read starts an event."""

    def read(self, data: bytes) -> bytes:
        """The translated events of one read (often empty: `[DONE]`, or an event not complete yet)."""
        if self._between:
            text = self._text_of(data)
            if text is not None:  # most reads: one ordinary text chunk
                out = self._feed_text(text, self._texts.finish)
                if out is not None:
                    return out
            elif data == DONE_EVENT:
                return b""
        decoder, feed = self._decoder or self._new_decoder(), self._feed
        payloads = data_of(decoder, data)
        self._between = not decoder.pending
        if len(payloads) != 1:  # a read of several events (or none): an upstream that does not flush each one
            return b"".join([feed(orjson.loads(payload)) for payload in payloads])
        payload = payloads[0]
        chunk = orjson.loads(payload)
        self._texts.learn(payload if isinstance(payload, bytes) else payload.encode())  # only reads of one event
        return feed(chunk)

    def _new_decoder(self) -> SSEDecoder:
        decoder = self._decoder = SSEDecoder()
        return decoder
