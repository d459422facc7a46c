"""The front doors (issue 19): `/v1/messages` translated to an OpenAI-format deployment and relayed natively from an
Anthropic one, and `/v1/responses` translated, each against the chat route in the same run: one Sluice process
each on bench/sluice-bench.yaml, both on the gateway core and loaded at once (bench/paired.py), complete replies
and streams.

    .venv/bin/python bench/run.py --frontdoors [--write docs/benchmarks.md]"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import catalog
import measure
import paired
from loadgen import Call, median, time_stream
from measure import Session
from targets import PROMPT, SLUICE_KEY, Target, chat_body, sluice_launch

COUNT, SECONDS = 6, 4.0
BOUND = 1 / 1.15
"""Issue 19: each front door's CPU per request within 15 % of the chat route's (chat ÷ front door ≥ 0.87)."""
AUTH = (("Authorization", f"Bearer {SLUICE_KEY}"),)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def messages_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "max_tokens": 1024, "messages": PROMPT}
    if stream:
        body["stream"] = True
    return _json(body)


def responses_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "input": PROMPT[-1]["content"], "store": False}
    if stream:
        body["stream"] = True
    return _json(body)


def target(label: str, path: str, body: bytes) -> Target:
    """One Sluice worker on bench/sluice-bench.yaml, sent `body` at `path` (its warm-up too)."""
    def request(port: int, scenario: str) -> Call | str:
        return Call(port, path, body, AUTH)

    return Target("sluice", label, sluice_launch(1), request, version=catalog.sluice_version,
                  unavailable=catalog.sluice_missing)


Build = Callable[[bool], Target]
"""A front door's target: fast (the upstream's 8 chunks at once, for CPU per request) or paced (64 chunks 20 ms
apart, for the stream timings)."""
PAIRINGS: tuple[tuple[str, bool, Build], ...] = (
    ("/v1/messages → OpenAI deployment (translated)", False,
     lambda paced: target("messages, translated", "/v1/messages", messages_body("gpt-bench", False))),
    ("/v1/messages → Anthropic deployment (native)", False,
     lambda paced: target("messages, native", "/v1/messages", messages_body("claude-bench", False))),
    ("/v1/responses → OpenAI deployment (translated)", False,
     lambda paced: target("responses, translated", "/v1/responses", responses_body("gpt-bench", False))),
    ("/v1/messages stream → OpenAI deployment (translated)", True,
     lambda paced: target("messages stream, translated", "/v1/messages",
                          messages_body("gpt-stream" if paced else "gpt-bench", True))),
    ("/v1/messages stream → Anthropic deployment (native)", True,
     lambda paced: target("messages stream, native", "/v1/messages",
                          messages_body("claude-stream" if paced else "claude-bench", True))),
    ("/v1/responses stream → OpenAI deployment (translated)", True,
     lambda paced: target("responses stream, translated", "/v1/responses",
                          responses_body("gpt-stream" if paced else "gpt-bench", True))),
)
STREAMS = 10
"""Paced streams timed one at a time per target, after the loaded runs."""


def chat_target(stream: bool, paced: bool = False) -> Target:
    body = chat_body("gpt-stream" if paced else "gpt-bench", stream=True) if stream else chat_body("gpt-bench")
    return target("chat stream" if stream else "chat", "/v1/chat/completions", body)


def stream_timings(session: Session, built: Target) -> dict[str, float]:
    """First event and whole stream (to the last event), medians of `STREAMS` paced streams at one connection."""
    with session.started(built) as (_, port):
        call = built.call(port, "chat")
        assert isinstance(call, Call)
        timings = [time_stream(call) for _ in range(STREAMS)]
    return {"first_ms": median([t.first_ms for t in timings]),
            "total_ms": median([t.first_ms + sum(t.gaps_ms) for t in timings])}


def measure_frontdoors(session: Session, count: int = COUNT, seconds: float = SECONDS,
                       log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """Each front door paired with the chat route (a complete reply, or a stream, like the front door's); for the
    streams, then, the first event and the whole stream of paced streams, the chat route's and the front door's."""
    rows = []
    for name, stream, build in PAIRINGS:
        log(f"frontdoors: {name} against the chat route, {count} × {seconds:g} s")
        found: dict[str, Any] = paired.summary(paired.pairs(session, chat_target(stream), build(False), count,
                                                            seconds), {})
        if stream:
            log(f"frontdoors: {name}, {STREAMS} paced streams each, one at a time")
            found["chat_stream"] = stream_timings(session, chat_target(True, paced=True))
            found["door_stream"] = stream_timings(session, build(True))
        rows.append({"name": name, "stream": stream, **found})
    return {"rows": rows, "count": count, "seconds": seconds}


def met(figures: dict[str, Any]) -> bool:
    return all(row["cpu_ratio"] >= BOUND for row in figures["rows"])


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: one Sluice process for the chat route and one for the front door, both on the gateway "
             f"core and loaded at once (32 connections each, {figures['count']} runs of {figures['seconds']:g} s, "
             "medians; ratio lowest–highest of the runs in brackets); a stream is paired with a streamed chat. CPU "
             "is each whole process tree's.", "",
             "| front door | req/s chat, front door | front door ÷ chat (req/s) | CPU µs/req chat, front door "
             "| chat ÷ front door (CPU) | p99 ms chat, front door | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in figures["rows"]:
        lines.append(f"| {row['name']} | {row['off_rps']:,.0f}, {row['on_rps']:,.0f} | **{row['ratio']:.3f}** "
                     f"({row['ratio_low']:.3f}–{row['ratio_high']:.3f}) | {row['off_cpu_us']:.0f}, "
                     f"{row['on_cpu_us']:.0f} | **{row['cpu_ratio']:.3f}** | {row['off_p99_ms']:.1f}, "
                     f"{row['on_p99_ms']:.1f} | {row['errors']:.0f} |")
    lines += ["", "Streams, paced (64 events 20 ms apart), one at a time, medians of "
                  f"{STREAMS}: the first event and the whole stream, the chat route's against the front door's.", "",
              "| front door | first event ms chat, front door | whole stream ms chat, front door |", "|---|---:|---:|"]
    for row in figures["rows"]:
        if "door_stream" in row:
            chat, door = row["chat_stream"], row["door_stream"]
            lines.append(f"| {row['name']} | {chat['first_ms']:.2f}, {door['first_ms']:.2f} "
                         f"({door['first_ms'] - chat['first_ms']:+.2f}) | {chat['total_ms']:.1f}, "
                         f"{door['total_ms']:.1f} ({door['total_ms'] - chat['total_ms']:+.1f}) |")
    worst = min(row["cpu_ratio"] for row in figures["rows"])
    lines += ["", f"Bound: each front door's CPU per request within 15 % of the chat route's (chat ÷ front door ≥ "
                  f"{BOUND:.3f}): lowest {worst:.3f}: {'met' if met(figures) else '**missed**'}."]
    return lines
