"""A bounded soak: `sluice serve` (request log on) under mixed traffic, its whole process tree's memory and open
descriptors sampled every second, every request's outcome counted, and the request log checked against what was
sent.

    .venv/bin/python -m tests.reliability.soak --seconds 1800 [--json FILE]    # the long variant (make soak)

Traffic, `CONCURRENCY` callers at once, each picking in turn: chat, streams read to the end, streams abandoned
after their first event, an upstream that refuses connections (502), a bad body (400), keyless and wrong-key
requests (401). "Failed clearly" is the expected error status with an OpenAI-shaped body; anything else (a
transport error, an unexpected status, a stream without its end) is "lost". The slopes are fitted over the run
after its first quarter (warm-up: pools, caches, the writer's first batches)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_serve import run_serve, worker_pids

ADMIN = "sk-admin-soak"
CONCURRENCY = 16
RATE = float(os.environ.get("SOAK_RATE", "200"))
"""Requests per second in all: what a busy production instance serves, not the saturation the benchmarks
measure. At saturation on this machine the request log's writer (at idle priority) falls behind, and the worker
holds the backlog (up to ~50 MiB, then the spill file: docs/request-log.md), which would read as a leak."""
CONFIG = """
providers:
  mock: {type: mock, chunk_delay_ms: 2, chunks: 12}
  gone: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: x, retries: {attempts: 0},
         breaker: {enabled: false}}
models:
  - {name: mock, provider: mock, model: mock-1}
  - {name: gone, provider: gone, model: gone-1}
"""
KINDS = tuple(os.environ.get("SOAK_KINDS", "chat,stream,abandoned,unreachable,bad_body,keyless,wrong_key").split(","))
EXPECTED = {"chat": 200, "stream": 200, "abandoned": 200, "unreachable": 502, "bad_body": 400, "keyless": 401,
            "wrong_key": 401}


@dataclass
class SoakResult:
    seconds: float
    attempted: int = 0
    succeeded: int = 0
    failed_clearly: int = 0
    lost: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    losses: list[str] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    rss_slope_mib_per_min: float = 0.0
    fd_slope_per_min: float = 0.0
    logged: int = 0
    """Request-log rows of the soak's requests once the writer drained."""

    def summary(self) -> str:
        return (f"{self.attempted} requests in {self.seconds:.0f} s: {self.succeeded} succeeded, "
                f"{self.failed_clearly} failed clearly, {self.lost} lost; RSS {self.rss_mib[0]:.0f} -> "
                f"{self.rss_mib[-1]:.0f} MiB (slope {self.rss_slope_mib_per_min:+.2f} MiB/min), descriptors "
                f"{self.fds[0]} -> {self.fds[-1]} (slope {self.fd_slope_per_min:+.2f}/min); {self.logged} logged")


def tree(supervisor: int) -> list[int]:
    """The supervisor's workers and every process under them (the log writers)."""
    found, pending = [], list(worker_pids(supervisor))
    while pending:
        pid = pending.pop()
        found.append(pid)
        try:
            pending += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def sample(supervisor: int) -> tuple[float, int]:
    """The tree's resident anonymous memory (MiB: file pages such as SQLite's mapped database are the kernel's
    cache, not the process's) and open descriptors."""
    rss, fds = 0, 0
    for pid in tree(supervisor):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:"))
    return rss / 1024, fds


def slope_per_minute(values: list[float], skip: float = 0.25) -> float:
    """Least-squares slope of one-per-second samples, per minute, after the first `skip` of them (warm-up)."""
    tail = values[int(len(values) * skip):]
    if len(tail) < 3:
        return 0.0
    return statistics.linear_regression(range(len(tail)), tail).slope * 60


async def _one(client: httpx.AsyncClient, kind: str) -> str | None:
    """One request of `kind`; None if it ended as expected, else what went wrong."""
    headers = {"Authorization": "Bearer sk-e2e"}
    body: dict[str, Any] = {"model": "mock", "messages": [{"role": "user", "content": "one two three four"}]}
    if kind == "keyless":
        headers = {}
    elif kind == "wrong_key":
        headers = {"Authorization": "Bearer sk-wrong"}
    elif kind == "unreachable":
        body["model"] = "gone"
    if kind in ("stream", "abandoned"):
        body["stream"] = True
        async with client.stream("POST", "/v1/chat/completions", headers=headers, json=body) as reply:
            if reply.status_code != 200:
                return f"{kind}: status {reply.status_code}"
            last = None
            async for line in reply.aiter_lines():
                if line.startswith("data:"):
                    last = line
                    if kind == "abandoned":
                        return None  # leaving the block closes the connection mid-stream
            return None if last == "data: [DONE]" else f"{kind}: ended with {last!r}"
    if kind == "bad_body":
        reply = await client.post("/v1/chat/completions", headers=headers, content=b'{"model": ')
    else:
        reply = await client.post("/v1/chat/completions", headers=headers, json=body)
    if reply.status_code != EXPECTED[kind]:
        return f"{kind}: status {reply.status_code} {reply.text[:120]}"
    if reply.status_code != 200 and "error" not in reply.json():
        return f"{kind}: error body without `error`: {reply.text[:120]}"
    return None


async def _drive(url: str, supervisor: int, seconds: float, result: SoakResult) -> None:
    counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    ends = time.monotonic() + seconds

    async def caller(index: int) -> None:
        turn = index
        pause = CONCURRENCY / RATE
        due = time.monotonic() + index * pause / CONCURRENCY
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while time.monotonic() < ends:
                due += pause
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                kind = KINDS[turn % len(KINDS)]
                turn += 1
                try:
                    problem = await _one(client, kind)
                except httpx.HTTPError as exc:
                    problem = f"{kind}: {type(exc).__name__}: {exc}"
                if problem is None:
                    counts[kind]["ok"] += 1
                else:
                    counts[kind]["lost"] += 1
                    if len(result.losses) < 20:
                        result.losses.append(problem)

    async def sampler() -> None:
        while time.monotonic() < ends:
            rss, fds = sample(supervisor)
            result.rss_mib.append(rss)
            result.fds.append(fds)
            await asyncio.sleep(1)

    await asyncio.gather(sampler(), *(caller(index) for index in range(CONCURRENCY)))
    for kind, counted in counts.items():
        result.by_kind[kind] = dict(counted)
        done = counted["ok"]
        result.attempted += done + counted["lost"]
        result.lost += counted["lost"]
        if EXPECTED[kind] == 200:
            result.succeeded += done
        else:
            result.failed_clearly += done


def _logged(url: str, since: str) -> int:
    """Rows in the request log since the soak began (its own requests: the admin routes are not logged), summed
    from `/admin/usage` (one aggregate query, where paging through hundreds of thousands of rows took minutes)."""
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        rows = client.get("/admin/usage", params={"since": since, "bucket": "day"}).json()["data"]
    return sum(int(row["requests"]) for row in rows)


def run(seconds: float, data_dir: Path, warm_up: float = 0.25) -> SoakResult:
    """The soak for `seconds`; the slopes leave out the first `warm_up` of the run."""
    result = SoakResult(seconds=seconds)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    with run_serve(CONFIG, data_dir, {"SLUICE_ADMIN_KEY": ADMIN}) as (url, process):
        asyncio.run(_drive(url, process.pid, seconds, result))
        expected, deadline = result.attempted, time.monotonic() + 60
        while time.monotonic() < deadline:
            result.logged = _logged(url, since)
            if result.logged >= expected:
                break
            time.sleep(1)
    result.rss_slope_mib_per_min = slope_per_minute(result.rss_mib, warm_up)
    result.fd_slope_per_min = slope_per_minute([float(count) for count in result.fds], warm_up)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-soak-") as directory:
        result = run(args.seconds, Path(directory))
    print(result.summary())
    for loss in result.losses:
        print("  lost:", loss)
    if args.json:
        figures = asdict(result)
        figures["rss_mib"] = figures["rss_mib"][::max(1, len(figures["rss_mib"]) // 120)]
        figures["fds"] = figures["fds"][::max(1, len(figures["fds"]) // 120)]
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if result.lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
