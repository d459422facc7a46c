"""Load and timing: wrk runs (closed loop, N connections) and a one-at-a-time SSE stream timer."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK_SCRIPT = Path(__file__).parent / "wrk" / "request.lua"
STREAM_END_MARKERS = (b"data: [DONE]", b"message_stop", b"\r\n0\r\n\r\n")


@dataclass(frozen=True)
class Call:
    """One HTTP request to a target: where, what, with which headers."""

    port: int
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "POST"


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    """count.lua runs: answers by status class (`answered`, `ok`, `s4xx`, `s5xx`, `other`) and socket errors."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(call: Call, connections: int, seconds: float, *, cpus: str = "1", timeout_s: float = 5.0,
            script: str = "request.lua", env: dict[str, str] | None = None) -> WrkResult:
    """Closed-loop wrk run; non-2xx answers, socket errors and timeouts all count as errors. `script` is one of
    bench/wrk/ (unique.lua: a new body each request; count.lua: stop after BENCH_REQUESTS answers, which also
    fills `statuses`), `env` more variables for it."""
    env = {**os.environ, "BENCH_METHOD": call.method, "BENCH_BODY": call.body.decode(),
           "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in call.headers), "BENCH_WRK_DIR": str(WRK_SCRIPT.parent),
           **(env or {})}
    cmd = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           f"--timeout={max(1, round(timeout_s))}s", "-s", str(WRK_SCRIPT.parent / script),
           f"http://127.0.0.1:{call.port}{call.path}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.stdout.splitlines() if ln.startswith("BENCH_")}
    if "BENCH_JSON" not in lines:
        raise RuntimeError(f"wrk gave no result: {out.stderr.strip() or out.stdout.strip()}")
    raw = json.loads(lines["BENCH_JSON"])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    statuses = {**json.loads(lines["BENCH_STATUS"]), **{k: raw[k] for k in ("connect", "read", "write", "timeout")}} \
        if "BENCH_STATUS" in lines else {}
    return WrkResult(connections, raw["requests"], raw["duration_us"] / 1e6, errors, raw["p50_us"] / 1000,
                     raw["p90_us"] / 1000, raw["p99_us"] / 1000, raw["max_us"] / 1000, statuses)


@dataclass(frozen=True)
class StreamTiming:
    """One stream: time to the first event, the gaps between events, and how many events came."""

    first_ms: float
    gaps_ms: tuple[float, ...]
    events: int


def time_stream(call: Call, timeout_s: float = 30.0) -> StreamTiming:
    """Send one streaming request on a fresh connection; timestamp every `data:` line as its bytes arrive.

    Blocking socket, no HTTP library: a few microseconds between a packet and its timestamp, the same for the
    direct upstream and every gateway, so the difference between them is the gateway's."""
    head = [f"{call.method} {call.path} HTTP/1.1", f"Host: 127.0.0.1:{call.port}", "Content-Type: application/json",
            f"Content-Length: {len(call.body)}", "Accept: text/event-stream",
            *(f"{k}: {v}" for k, v in call.headers)]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + call.body
    arrivals: list[float] = []
    buffer = b""
    with socket.create_connection(("127.0.0.1", call.port), timeout=timeout_s) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(request)
        while True:
            data = sock.recv(65536)
            now = time.perf_counter()
            if not data:
                break
            buffer += data
            events = buffer.count(b"data:") - buffer.count(b"data: [DONE]")
            arrivals.extend([now] * (events - len(arrivals)))
            if any(marker in buffer[-200:] for marker in STREAM_END_MARKERS):
                break
    if not buffer.startswith(b"HTTP/1.1 200") or not arrivals:
        raise RuntimeError(f"stream failed: {buffer[:200]!r}")
    gaps = tuple((b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False))
    return StreamTiming((arrivals[0] - start) * 1000, gaps, len(arrivals))


def percentile(values: list[float] | tuple[float, ...], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
