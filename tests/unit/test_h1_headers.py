"""The lean client's reply headers (services/h1.py, read as bytes) against the same head read as latin-1 text the
way a pyreqwest-shaped response's headers are relayed (providers/passthrough.py `reply_headers`): the same pairs,
names lower-cased and values trimmed as `str` does, whatever bytes the names and values hold."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from sluice.providers.passthrough import reply_headers
from sluice.providers.upstream import OpenStream
from sluice.services import h1

TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="\r\n"), max_size=12)
NAMES = st.one_of(st.sampled_from(["Connection", "X-A", "Keep-Alive", "Te", "Server", "x-\xc0\xdf"]),
                  TEXT.map(lambda text: "x-" + text.replace(":", "")))
VALUES = st.one_of(TEXT, st.sampled_from(["keep-alive", "Close", " X-A , Server", "\xa0x\x85", "\x1cv\x1f"]))


class _Headers:
    """What pyreqwest's header map offers the relaying code: `items()`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return self.pairs


class _Response:
    """A pyreqwest-shaped response: headers with names lower-case and values trimmed, as text."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.headers = _Headers(pairs)


def read_as_text(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_reply_headers_read_as_bytes_are_those_read_as_text(pairs: list[tuple[str, str]]) -> None:
    head = "\r\n".join(["HTTP/1.1 200 OK", *(f"{name}:{value}" for name, value in pairs)]).encode("latin-1")

    async def read() -> h1.Reply:
        loop = asyncio.get_running_loop()
        client = h1.H1Client(4, 1.0, 1.0, None)
        reply = h1.Reply(client, loop, loop.time() + 5, 5.0)
        connection = h1._Connection(client, ("127.0.0.1", 1), loop)
        connection.reply, connection.state = reply, h1._HEAD  # reading a head, as `start` leaves it
        connection.data_received(head + b"\r\n\r\n")
        return reply

    reply = asyncio.run(read())
    assert reply.status == 200
    text = read_as_text(head)
    assert list(reply.headers.items()) == text
    stand_in = OpenStream(None, _Response(text))  # type: ignore[arg-type]
    assert reply_headers(OpenStream(reply, reply)) == reply_headers(stand_in)  # type: ignore[arg-type]
    for name, _ in text:
        assert reply.get_header(name) == next(value for found, value in text if found == name)
