"""What a 200 from an OpenAI-compatible upstream must look like: checks cheap enough for the relay's hot path.

Replies and streams are relayed as bytes, never parsed on the request path, so these checks look at bytes only:
a reply's first and last bytes and its required key; a stream's lines as they pass, holding back the event a
chunk cut, so a broken stream always ends on an event boundary before the gateway's error event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from sluice.errors import GatewayError, UpstreamError, UpstreamProtocolError
from sluice.providers.upstream import OpenStream, map_transport_errors

REQUIRED_KEY = {"chat": b'"choices"', "completions": b'"choices"', "embeddings": b'"data"'}
"""The key each operation's reply object cannot lack."""
REPLY_NAMES = {"chat": "chat completion", "completions": "completion", "embeddings": "embeddings list"}
SSE_PREFIXES = (b":", b"event:", b"id:", b"retry:")
"""What a line other than `data:` may start with (a comment, or a field an SSE reader knows)."""
BARE_FIELDS = frozenset({b"data", b"event", b"id", b"retry", b"data\r", b"event\r", b"id\r", b"retry\r"})
"""A field with no colon: an empty value, which SSE allows."""
MAX_EVENT_BYTES = 8 * 1024 * 1024
"""A partial event held back longer than this is not an event: the upstream sends no line breaks."""
SHOWN_BYTES = 80


def check_reply(provider: str, operation: str, body: bytes) -> None:
    """Raise UpstreamProtocolError unless `body` looks like the operation's JSON object: `{`…`}` around its
    required key (the bytes are relayed unparsed, so this is a look at them, not a parse)."""
    key = REQUIRED_KEY.get(operation)
    if key is None or (body[:1] == b"{" and body[-1:] == b"}" and key in body):
        return
    stripped = body.strip()
    if stripped[:1] == b"{" and stripped[-1:] == b"}" and key in stripped:
        return
    raise not_a_reply(provider, REPLY_NAMES[operation], stripped)


def not_a_reply(provider: str, expected: str, body: bytes) -> UpstreamProtocolError:
    """The 502 for a 200 whose `body` is not the `expected` reply; the upstream's own error message if it sent
    one, else the body's first bytes."""
    message = _error_message(body)
    if message is not None:
        return UpstreamProtocolError(f"Upstream provider {provider!r} answered HTTP 200 with an error instead of a "
                                     f"{expected}: {message}")
    what = f"begins {shown(body)}" if body else "is empty"
    return UpstreamProtocolError(f"Upstream provider {provider!r} answered HTTP 200 with a body that is not a "
                                 f"{expected} (it {what}).")


def shown(data: bytes) -> str:
    """The first bytes of `data`, quoted, for an error message."""
    text = data[:SHOWN_BYTES].decode("utf-8", "replace")
    return repr(text + "…" if len(data) > SHOWN_BYTES else text)


def _error_message(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) and error else None


class StreamCheck:
    """Watches an OpenAI SSE stream go by: only complete events pass (the rest of a chunk waits for its event's
    blank line), and the stream fails (`failure`, with the events before the bad one passed) at a line that is
    not SSE, at an event whose first `data:` is neither a JSON object nor `[DONE]`, at an upstream `{"error": …}`
    event, and, through `end`, when the upstream closes it before `data: [DONE]`. After `[DONE]` all passes."""

    __slots__ = ("provider", "held", "scanned", "in_data", "erroring", "done", "failure")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.held = b""
        """The start of an event that has not ended yet."""
        self.scanned = 0
        """How much of `held` has been checked already."""
        self.in_data = False
        """The event being read has had its first `data:` line."""
        self.erroring = False
        """That line was an upstream error object."""
        self.done = False
        self.failure: GatewayError | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The complete events to relay now (check `failure` next)."""
        if self.done:
            return chunk
        held = self.held
        if (not held and chunk.startswith(b"data: {") and chunk.find(b"\n") == len(chunk) - 2
                and chunk.endswith(b"\n\n") and not chunk.startswith(b'data: {"error"')):
            return chunk  # the usual chunk, one whole event: no line-by-line look needed
        data = held + chunk if held else chunk
        find, startswith = data.find, data.startswith
        ready = 0  # the end of the last complete event
        start = self.scanned
        in_data = self.in_data
        while (end := find(b"\n", start)) >= 0:
            if end == start or (end == start + 1 and data[start] == 13):  # a blank line ends the event
                if self.erroring:
                    return self._stop(data, ready, self._upstream_error(data[ready:start]))
                ready, in_data = end + 1, False
            elif startswith(b"data:", start):
                if not in_data:
                    in_data = True
                    if not startswith(b"data: {", start) or startswith(b'data: {"error"', start):
                        failure = self._first_data(data, start + 5, end)
                        if self.done:
                            self.held = b""
                            return data
                        if failure is not None:
                            return self._stop(data, ready, failure)
            elif not startswith(SSE_PREFIXES, start) and data[start:end] not in BARE_FIELDS:
                return self._stop(data, ready, self._fault("sent a line that is not server-sent events: "
                                                           f"{shown(data[start:end])}"))
            start = end + 1
        self.in_data = in_data
        self.held = data[ready:]
        self.scanned = start - ready
        if len(self.held) > MAX_EVENT_BYTES:
            self.failure = self._fault(f"sent more than {MAX_EVENT_BYTES} bytes without ending an event")
        return data[:ready]

    def _stop(self, data: bytes, ready: int, failure: GatewayError) -> bytes:
        """Fail with `failure`, passing the events before the bad one."""
        self.failure, self.held = failure, b""
        return data[:ready]

    def end(self) -> bytes:
        """The upstream closed the stream: what is left to relay, or UpstreamProtocolError unless it had ended."""
        if self.done:
            return b""
        if not self.held.strip():
            raise self._fault("ended the stream before `data: [DONE]`")
        cut = self.held
        last = self.feed(b"\n")  # the last line as if it had ended: `data: [DONE]`, or one that is not SSE
        if self.done:
            return last + b"\n"
        raise self.failure or self._fault(f"cut the stream mid-event: {shown(cut)}")

    def _first_data(self, data: bytes, value: int, end: int) -> GatewayError | None:
        """Check an event's first `data:` line that is not plainly a JSON object (its value starts at `value`):
        `[DONE]` (sets `done`), an upstream error (sets `erroring`), or the failure it is."""
        if data[value:value + 1] == b" ":
            value += 1
        first = data[value:value + 1]
        if first == b"{":
            self.erroring = data.startswith(b'{"error"', value)
            return None
        if first == b"[" and data[value:end].strip() == b"[DONE]":
            self.done = True
            return None
        return self._fault(f"sent a data line that is neither JSON nor [DONE]: {shown(data[value:end])}")

    def _upstream_error(self, event: bytes) -> GatewayError:
        """The upstream's own error event (`data: {"error": {…}}`), as the error that ends the stream."""
        lines = [line.removeprefix(b"data:").removeprefix(b" ") for line in event.splitlines()
                 if line.startswith(b"data:")]
        try:
            parsed = orjson.loads(b"\n".join(lines))
        except orjson.JSONDecodeError:
            return self._fault(f"sent an unreadable error event: {shown(event)}")
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if not isinstance(error, dict):
            error = {"message": error}
        message = error.get("message")
        code, kind = error.get("code"), error.get("type")
        return UpstreamError(message if isinstance(message, str) and message else
                             f"Upstream provider {self.provider!r} sent an error event mid-stream.", status=502,
                             type=kind if isinstance(kind, str) and kind else None,
                             code=None if code is None else str(code))

    def _fault(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"Upstream provider {self.provider!r} {what}.")


async def checked_events(stream: OpenStream, provider: str) -> AsyncGenerator[bytes, None]:
    """An open OpenAI SSE reply relayed as it arrives, through a `StreamCheck`; closing early aborts it."""
    check = StreamCheck(provider)
    reader = stream.response.body_reader
    try:
        with map_transport_errors(provider):
            while (chunk := await reader.read_chunk()) is not None:
                ready = check.feed(bytes(chunk))
                if ready:
                    yield ready
                if check.failure is not None:
                    raise check.failure
        rest = check.end()
        if rest:
            yield rest
    finally:
        await stream.close()
