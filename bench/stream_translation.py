"""In-process cost of the front doors' stream translation (µs per 8-chunk stream), against the chat route's relay.

    .venv/bin/python bench/stream_translation.py [--rounds 7] [--streams 2000] [--split] [--usage] [--against REV]

Feeds the OpenAI chat stream the benchmark upstream sends (bench/upstream/mock.lua: a role chunk with text, six
text chunks, a finish chunk; `--usage` adds usage to the finish chunk) through each door's whole translation
(`ChatReads` and the translator, as http/messages.py and http/responses.py have `relay` run them: decoding, the
fast path for ordinary text chunks, parsing, events, the ending; at `--against`, the same modules as they were at
a revision that has `ChatReads`), and through what the chat route does per stream on the
gateway side (the provider's `StreamCheck`), for scale. The stream arrives as one read (the upstream sends it at
once), or with `--split` one read per event. `--against REV` adds the doors
as they were at a git revision (their modules read with `git show`), for a before/after in one run. Medians of
`--rounds` rounds, the variants alternated within each round.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sluice.frontdoors.chat_reads import ChatReads  # noqa: E402
from sluice.frontdoors.messages_stream import ChatToMessagesStream  # noqa: E402
from sluice.frontdoors.responses_stream import ChatToResponsesStream  # noqa: E402
from sluice.ids import random_hex  # noqa: E402
from sluice.providers.protocol import StreamCheck  # noqa: E402

HEAD = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-bench",'
        b'"choices":[{"index":0,"delta":{')
USAGE = b',"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}'
REQUEST: dict[str, Any] = {"model": "gpt-bench", "input": "Say hello.", "store": False, "stream": True}


def upstream_events(chunks: int = 8, usage: bool = False) -> list[bytes]:
    """The benchmark upstream's stream, one event per item, `[DONE]` last."""
    events = []
    for i in range(1, chunks + 1):
        delta = b'"role":"assistant","content":"tok "' if i == 1 else b'"content":"tok "'
        finish = b'"stop"' if i == chunks else b"null"
        tail = USAGE if usage and i == chunks else b""
        events.append(HEAD + delta + b'},"finish_reason":' + finish + b"}]" + tail + b"}\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


async def _source(reads: list[bytes]) -> AsyncGenerator[bytes, None]:
    for read in reads:
        yield read


def drain(stream: AsyncGenerator[bytes, None]) -> int:
    """Run an async generator that never waits to its end, without an event loop; the bytes it yielded."""
    size = 0
    while True:
        step = stream.__anext__()
        try:
            step.send(None)
        except StopIteration as done:
            size += len(done.value)
        except StopAsyncIteration:
            return size
        else:  # pragma: no cover - the sources here never wait
            raise RuntimeError("the stream waited")


def chat_relay(reads: list[bytes]) -> int:
    """The chat route's own per-stream work on these reads: each one through the provider's `StreamCheck`."""
    check = StreamCheck("bench")
    size = sum(len(check.feed(read)) for read in reads)
    return size + len(check.end())


def relayed(reads: list[bytes], shape: Callable[[bytes], bytes], finish: Callable[[], bytes]) -> int:
    """`relay`'s loop over a source of these reads, as a front door has it run: each read shaped (translated),
    then the stream's end; the bytes sent."""
    source = _source(reads)
    size = 0
    while True:
        step = source.__anext__()
        try:
            step.send(None)
        except StopIteration as done:
            size += len(shape(done.value))
        except StopAsyncIteration:
            return size + len(finish())
        else:  # pragma: no cover - the sources here never wait
            raise RuntimeError("the stream waited")


def messages_door(reads: list[bytes]) -> int:
    """The /v1/messages translation of these reads, as http/messages.py has `relay` run it."""
    stream = ChatToMessagesStream(model="gpt-bench", message_id="msg_" + random_hex(96))
    return relayed(reads, ChatReads(stream.feed, stream.feed_text).read, stream.finish)


def responses_door(reads: list[bytes]) -> int:
    """The /v1/responses translation of these reads (nothing stored), as http/responses.py has `relay` run it."""
    translator = ChatToResponsesStream(request=REQUEST, response_id="resp_bench", created_at=1700000000)
    return relayed(reads, ChatReads(translator.feed, translator.feed_text).read, translator.finish)


BEFORE = ("sluice.streaming", "sluice.stream_reader", "sluice.frontdoors.text_chunks", "sluice.frontdoors.chat_reads",
          "sluice.frontdoors.messages_reply", "sluice.frontdoors.responses_reply",
          "sluice.frontdoors.messages_stream", "sluice.frontdoors.responses_stream")
"""The modules of the doors' stream translation, loaded at `--against` (in this order) as `before.<name>`."""


def load_before(revision: str) -> dict[str, Callable[[list[bytes]], int]]:
    """The two doors as they were at `revision`: `BEFORE` read from git, importing one another's old versions."""
    for name in BEFORE:
        parts = f"before.{name}".split(".")
        for depth in range(1, len(parts)):
            sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        path = "src/" + name.replace(".", "/") + ".py"
        source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
        for other in BEFORE:
            source = source.replace(f"from {other} import", f"from before.{other} import")
        module = types.ModuleType(f"before.{name}")
        module.__file__ = f"{revision}:{path}"
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    old_reads = sys.modules["before.sluice.frontdoors.chat_reads"].ChatReads
    old_messages = sys.modules["before.sluice.frontdoors.messages_stream"].ChatToMessagesStream
    old_responses = sys.modules["before.sluice.frontdoors.responses_stream"].ChatToResponsesStream

    def messages_before(reads: list[bytes]) -> int:
        stream = old_messages(model="gpt-bench", message_id="msg_" + random_hex(96))
        return relayed(reads, old_reads(stream.feed, stream.feed_text).read, stream.finish)

    def responses_before(reads: list[bytes]) -> int:
        translator = old_responses(request=REQUEST, response_id="resp_bench", created_at=1700000000)
        return relayed(reads, old_reads(translator.feed, translator.feed_text).read, translator.finish)

    return {f"/v1/messages at {revision}": messages_before, f"/v1/responses at {revision}": responses_before}


def bare(reads: list[bytes]) -> int:
    """The source alone, drained: what the door figures include that is not translation."""
    return drain(_source(reads))


VARIANTS: dict[str, Callable[[list[bytes]], int]] = {
    "source alone": bare, "chat route (StreamCheck)": chat_relay, "/v1/messages": messages_door,
    "/v1/responses": responses_door}


def per_stream_us(run: Callable[[list[bytes]], int], reads: list[bytes], streams: int) -> float:
    """This thread's CPU µs per stream over `streams` runs."""
    started = time.thread_time_ns()
    for _ in range(streams):
        run(reads)
    return (time.thread_time_ns() - started) / streams / 1000


def main() -> None:
    """Print the median µs per stream of each variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--split", action="store_true", help="one read per event, not the stream at once")
    parser.add_argument("--usage", action="store_true", help="usage in the finish chunk")
    parser.add_argument("--against", metavar="REV", help="also the doors at this git revision (e.g. HEAD)")
    args = parser.parse_args()
    variants = {**VARIANTS, **(load_before(args.against) if args.against else {})}
    events = upstream_events(usage=args.usage)
    reads = events if args.split else [b"".join(events)]
    for run in variants.values():
        per_stream_us(run, reads, args.streams // 10)  # warm up
    found: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            found[name].append(per_stream_us(run, reads, args.streams))
    print(f"{len(events) - 1} chunks, {'one read per event' if args.split else 'one read'}, medians of "
          f"{args.rounds} rounds × {args.streams} streams")
    base = statistics.median(found["source alone"])
    for name, values in found.items():
        median = statistics.median(values)
        print(f"  {name:32} {median:7.2f} µs/stream   (over the source alone: {median - base:6.2f})")


if __name__ == "__main__":
    main()
