"""The ordinary text chunk of an OpenAI chat stream, recognised on its bytes: the translators' fast path.

Most reads of a streaming upstream are one event holding one chunk that is only a piece of text for choice 0,
and every such chunk of a stream starts with the same members (`id`, `object`, `created`, `model`, …). Once a
chunk parsed the long way has shown those members (`learn`, which checks them as JSON once), a read is taken as
such a chunk when it is exactly ``data: `` + those members + one of the fixed shapes below + ``\\n\\n``, the text
a complete JSON string in the form `orjson.dumps` writes (only `\\"`, `\\\\`, the short control escapes and
``\\u00XX`` for the other control characters; UTF-8 left as it is). Its escaped text then goes straight into the
translated event, byte for byte what the long way (`orjson.loads`, `text_piece`, `orjson.dumps`) writes. Any
other read goes the long way.

Two more shapes of text chunk take the same way: a stream's first chunk, which also names the role
(``"delta":{"role":"assistant","content":…}``: its leading members are learnt from it on the spot), and the last,
which also gives a finish reason (``"finish_reason":"stop"``: kept in `finish`).
"""

from __future__ import annotations

import re

import orjson

CHOICES = b'"choices":'
TEXT_START = b'"choices":[{"index":0,"delta":{"content":"'
ROLE_START = b'"choices":[{"index":0,"delta":{"role":"assistant","content":"'
TAILS = frozenset(b'"}' + choice + b"}]" + usage + b"}\n\n" for choice in (b',"finish_reason":null',
                                                                           b',"logprobs":null,"finish_reason":null')
                  for usage in (b"", b',"usage":null'))
"""The usual ends of a read that is one ordinary text chunk, from the text's closing quote (the bench upstream's,
OpenAI's, Sluice's mock provider's)."""
ESCAPED = re.compile(rb'(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u00(?:0[0-7be-f]|1[0-9a-f]))+"')
"""A text with escapes, up to its closing quote, in the form orjson writes."""
END = re.compile(rb'\}(?:,"logprobs":null)?,"finish_reason":null\}\](?:,"usage":null)?'
                 rb'(?:,"obfuscation":"[A-Za-z0-9_-]*")?\}\n\n')
"""Any end of a read that is one ordinary text chunk, after the text's closing quote (`TAILS`, and OpenAI's
`obfuscation` member)."""
KNOWN_TAILS: dict[bytes, str | None] = {
    **dict.fromkeys(TAILS),
    **{b'"}' + logprobs + b',"finish_reason":"' + reason.encode() + b'"}]' + usage + b"}\n\n": reason
       for reason in ("stop", "length", "tool_calls", "content_filter")
       for logprobs in (b"", b',"logprobs":null') for usage in (b"", b',"usage":null')}}
"""`TAILS`, and the usual ends of a last text chunk: each with its finish reason (None for `TAILS`)."""
FINISHED = re.compile(rb'\}(?:,"logprobs":null)?,"finish_reason":"([a-z_]{1,40})"\}\](?:,"usage":null)?\}\n\n')
"""The end of a read that is a stream's last text chunk, after the text's closing quote: its finish reason."""
ENDINGS = (b"null}]}\n\n", b"null}\n\n", b'"}\n\n', b'"}]}\n\n')
"""How every read `TAILS`, `END` or `FINISHED` takes ends: a first look that turns most other reads away."""
QUOTE, BACKSLASH, CR, LF = ord('"'), ord("\\"), ord("\r"), ord("\n")
"""Looked for as byte values: an int is found with one memchr, a bytes needle costs a buffer taken (~0.25 µs)."""
TRIES = 3
"""How often a stream's leading members are learnt anew, at most (they rarely change within a stream)."""


class TextChunks:
    """Recognises one stream's ordinary text chunks on their bytes, once the stream's leading members are known:
    from a first chunk recognised here, or from a chunk parsed the long way (`learn`)."""

    __slots__ = ("_head", "_prefix", "_role_prefix", "_start", "_role_start", "_tries", "finish")

    def __init__(self) -> None:
        self._head = b"\x00"  # matches no payload: nothing learnt yet
        self._prefix = self._role_prefix = b"\x00"
        """What a read that is an ordinary text chunk (or one that names the role) starts with, up to its text."""
        self._start = self._role_start = 1
        self._tries = TRIES
        self.finish: str | None = None
        """The finish reason of the last text chunk recognised, if it gave one."""

    def text_of(self, read: bytes) -> bytes | None:
        """The escaped text of `read` when it is exactly one ordinary text chunk event, else None; `finish` is its
        finish reason. The caller makes sure no event was pending before `read`."""
        if read.startswith(self._prefix):  # (its end is checked below: no first look at it needed)
            start = self._start
        elif not read.endswith(ENDINGS):
            return None
        elif read.startswith(self._role_prefix) or (self._tries and self._learnt_from(read)):
            start = self._role_start if read.startswith(self._role_prefix) else self._start
        else:
            return None
        end = read.find(QUOTE, start)
        text = read[start:end]
        try:
            plain = text.decode().isprintable()  # UTF-8, no control characters (nor other unusual ones)
        except UnicodeDecodeError:
            return None
        if not plain or end <= start or BACKSLASH in text:  # escapes: that quote may be one of them
            match = ESCAPED.match(read, start)
            if match is None:
                return None
            end = match.end() - 1
            text = read[start:end]
            if not text.isascii():
                try:
                    text.decode()
                except UnicodeDecodeError:
                    return None
        finish = KNOWN_TAILS.get(read[end:], "")
        if finish != "":
            self.finish = finish
            return text
        if b'"obfuscation":"' in read[end:] and END.fullmatch(read, end + 1) is not None:
            self.finish = None
            return text
        finished = FINISHED.fullmatch(read, end + 1)
        if finished is None:
            return None
        self.finish = finished[1].decode()
        return text

    def learn(self, payload: bytes) -> None:
        """Take the members before `"choices"` of a chunk that arrived the long way as the stream's leading
        members, when they are a JSON object's first members (no `choices`, `error` or usage) on one line."""
        if self._tries == 0 or payload.startswith(self._head):
            return
        self._tries -= 1
        self._learn_head(payload[:payload.find(CHOICES)])

    def _learnt_from(self, read: bytes) -> bool:
        """Whether `read`, a text chunk event (naming the role or not) with leading members not seen yet, taught
        them."""
        at = read.find(CHOICES)
        if not read.startswith(b"data: ") or not read.startswith((TEXT_START, ROLE_START), at):
            return False
        head = read[6:at]
        if head == self._head or CR in head:  # a CR ends an SSE line: such a read is for the long way
            return False
        self._tries -= 1
        self._learn_head(head)
        return read.startswith((self._prefix, self._role_prefix))

    def _learn_head(self, head: bytes) -> None:
        if head[-1:] != b"," or head[:1] != b"{" or LF in head:  # (no CR: the decoder made it LF)
            return
        try:
            members = orjson.loads(head[:-1] + b"}")
        except orjson.JSONDecodeError:
            return
        if type(members) is dict and "choices" not in members and "error" not in members \
                and members.get("usage") is None:
            read_head = b"data: " + head
            self._head, self._prefix, self._role_prefix = head, read_head + TEXT_START, read_head + ROLE_START
            self._start, self._role_start = len(self._prefix), len(self._role_prefix)
