"""Measuring one target: start it on core 0, drive it from core 1, collect every figure the report shows."""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import loadgen
import procs
from loadgen import Call, WrkResult, run_wrk, time_stream
from targets import Target, probe, upstream_launch

GATEWAY_CPUS = "0"
LOAD_CPUS = "1"
BOTH_CPUS = "0,1"
NON_STREAM = ("embeddings", "passthrough", "anthropic")
STREAMS = ("stream", "anthropic_stream")


@dataclass(frozen=True)
class Plan:
    quick: bool
    scenarios: tuple[str, ...]
    latency_s: float = 5.0            # one connection: added latency
    ladder: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    step_s: float = 4.0               # each ladder point
    scenario_s: float = 4.0           # other non-stream scenarios, at 1 and 32 connections
    streams: int = 12                 # streams timed one at a time
    recovery_s: float = 5.0
    slow_connections: int = 2000
    slow_s: float = 12.0
    mem_requests: int = 100_000
    mem_bound_s: float = 90.0


FULL = Plan(False, ("chat", "embeddings", "passthrough", "anthropic", "stream", "anthropic_stream", "slow"))
QUICK = Plan(True, ("chat",), latency_s=3, ladder=(1, 4, 16, 32), step_s=2, recovery_s=2, mem_requests=0)


@dataclass
class Point:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @classmethod
    def of(cls, result: WrkResult) -> Point:
        return cls(result.connections, result.rps, result.p50_ms, result.p99_ms, result.errors)


@dataclass
class TargetResult:
    name: str
    label: str
    version: str
    status: str = "ok"
    ladder: list[Point] = field(default_factory=list)         # chat, by connections
    single: dict[str, Point] = field(default_factory=dict)    # scenario → one connection
    loaded: dict[str, Point] = field(default_factory=dict)    # scenario → 32 connections
    notes: dict[str, str] = field(default_factory=dict)       # scenario → why not measured
    cpu_ms: float = 0.0
    rss: dict[str, float] = field(default_factory=dict)       # idle, peak, after, recovered
    streams: dict[str, dict[str, float]] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)

    @property
    def chat_rps(self) -> float:
        return self.loaded["chat"].rps if "chat" in self.loaded else 0.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Session:
    """Pins this process (and so wrk) to the load core, runs the shared upstream there, starts targets."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        os.sched_setaffinity(0, {int(LOAD_CPUS)})
        procs.raise_own_fd_limit()
        self.upstream_port = procs.free_port()
        launch = upstream_launch(self.upstream_port)
        self.upstream = procs.start("upstream", launch.cmd, cpus=LOAD_CPUS, log_dir=run_dir)
        procs.wait_ready(self.upstream, self.upstream_port, probe(Call(self.upstream_port, "/v1/models", b"", (),
                                                                       "GET")), 15)

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @contextlib.contextmanager
    def started(self, target: Target, cpus: str = GATEWAY_CPUS) -> Iterator[tuple[procs.Proc, int]]:
        port = procs.free_port()
        launch = target.launch(port, self.upstream_url)
        proc = procs.start(target.name, launch.cmd, cpus=cpus, log_dir=self.run_dir, env=launch.env, cwd=launch.cwd)
        try:
            call = target.call(port, "chat")
            assert isinstance(call, Call)
            status = procs.wait_ready(proc, port, probe(call), target.ready_timeout)
            if status != 200:
                raise RuntimeError(f"chat answers HTTP {status}: {proc.log_tail()}")
            yield proc, port
        finally:
            proc.stop()

    def close(self) -> None:
        self.upstream.stop()


def measure_target(session: Session, target: Target, plan: Plan) -> TargetResult:
    result = TargetResult(target.name, target.label, "?")
    missing = target.unavailable()
    if missing:
        result.status = f"not measured: {missing}"
        return result
    result.version = target.version()
    log(f"measuring {target.label}")
    try:
        with session.started(target) as (proc, port):
            _chat(result, proc, target.call(port, "chat"), plan)
            for scenario in plan.scenarios[1:]:
                _scenario(result, proc, target.call(port, scenario), scenario, plan)
            result.rss["after_scenarios"] = proc.rss_mb()
        if plan.mem_requests:  # a fresh process: what 100,000 requests leave, not what the 2,000-connection burst did
            with session.started(target) as (proc, port):
                _memory(result, proc, target.call(port, "chat"), plan)
    except (RuntimeError, OSError) as exc:
        result.status = f"not measured: {str(exc).splitlines()[0][:200]}"
        log(f"{target.name}: {exc}")
    return result


def _chat(result: TargetResult, proc: procs.Proc, call: Call | str, plan: Plan) -> None:
    assert isinstance(call, Call)
    run_wrk(call, 8, 2 if plan.quick else 3)  # warm-up
    time.sleep(0.5)
    result.rss["idle"] = proc.rss_mb()
    result.rss["idle_pss"] = proc.pss_mb()
    with procs.RssSampler(proc) as sampler:
        single = run_wrk(call, 1, plan.latency_s)
        result.single["chat"] = Point.of(single)
        result.ladder.append(Point.of(single))
        for connections in plan.ladder[1:]:
            cpu_before = proc.cpu_seconds()
            point = run_wrk(call, connections, plan.step_s)
            result.ladder.append(Point.of(point))
            if connections == plan.ladder[-1]:
                result.loaded["chat"] = Point.of(point)
                result.cpu_ms = (proc.cpu_seconds() - cpu_before) * 1000 / max(point.requests, 1)
    result.rss["peak"] = sampler.peak
    result.rss["after"] = proc.rss_mb()
    time.sleep(plan.recovery_s)
    result.rss["recovered"] = proc.rss_mb()
    result.rss["recovered_pss"] = proc.pss_mb()


def _scenario(result: TargetResult, proc: procs.Proc, call: Call | str, scenario: str, plan: Plan) -> None:
    if isinstance(call, str):
        result.notes[scenario] = call
        return
    conn = http.client.HTTPConnection("127.0.0.1", call.port, timeout=30)
    try:
        code = probe(call)(conn)
    except OSError as exc:
        result.notes[scenario] = f"n/a ({exc})"
        return
    finally:
        conn.close()
    if code != 200:
        result.notes[scenario] = f"n/a (HTTP {code})"
        return
    if scenario in NON_STREAM:
        result.single[scenario] = Point.of(run_wrk(call, 1, plan.scenario_s))
        result.loaded[scenario] = Point.of(run_wrk(call, plan.ladder[-1], plan.scenario_s))
    elif scenario in STREAMS:
        _streams(result, call, scenario, plan)
    elif scenario == "slow":
        _slow(result, proc, call, plan)


def _streams(result: TargetResult, call: Call, scenario: str, plan: Plan) -> None:
    firsts: list[float] = []
    gaps: list[float] = []
    events = 0
    for _ in range(plan.streams):
        timing = time_stream(call)
        firsts.append(timing.first_ms)
        gaps.extend(timing.gaps_ms)
        events = timing.events
    result.streams[scenario] = {"first_p50": loadgen.median(firsts), "first_p99": loadgen.percentile(firsts, 99),
                                "gap_p50": loadgen.median(gaps), "gap_p99": loadgen.percentile(gaps, 99),
                                "events": float(events), "streams": float(plan.streams)}


def _slow(result: TargetResult, proc: procs.Proc, call: Call, plan: Plan) -> None:
    time.sleep(1)
    with procs.RssSampler(proc) as sampler:
        run = run_wrk(call, plan.slow_connections, plan.slow_s, timeout_s=15)
    result.slow = {"connections": plan.slow_connections, "seconds": plan.slow_s, "requests": run.requests,
                   "errors": run.errors, "rps": run.rps, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms,
                   "peak_rss": sampler.peak, "peak_pss": sampler.peak_pss}
    time.sleep(3)


def _memory(result: TargetResult, proc: procs.Proc, call: Call | str, plan: Plan) -> None:
    """Chat at 16 connections in 10 s runs until `mem_requests` are served (or the time bound), RSS after each."""
    assert isinstance(call, Call)
    rate = result.ladder[-2].rps if len(result.ladder) > 1 else 0.0
    if rate * plan.mem_bound_s < plan.mem_requests:
        result.memory = {"skipped_rate": rate}
        return
    run_wrk(call, 8, 2 if plan.quick else 3)  # warm-up, as for the idle figure of the first process
    time.sleep(0.5)
    idle = proc.rss_mb()
    served, errors, started, curve = 0, 0, time.monotonic(), []
    while served < plan.mem_requests and time.monotonic() - started < plan.mem_bound_s:
        run = run_wrk(call, 16, 10)
        served, errors = served + run.requests, errors + run.errors
        curve.append(proc.rss_mb())
    result.memory = {"requests": served, "errors": errors, "seconds": time.monotonic() - started, "idle": idle,
                     "after": curve[-1], "first_run": curve[0], "after_pss": proc.pss_mb()}
    time.sleep(plan.recovery_s * 2)
    result.memory["recovered"] = proc.rss_mb()
    result.memory["recovered_pss"] = proc.pss_mb()


def throughput(session: Session, target: Target, rounds: int, seconds: float, cpus: str = GATEWAY_CPUS,
               load_cpus: str = LOAD_CPUS, connections: int = 32) -> list[float]:
    """Chat req/s at `connections`, `rounds` times; for the guard and the workers comparison."""
    with session.started(target, cpus) as (_proc, port):
        call = target.call(port, "chat")
        assert isinstance(call, Call)
        run_wrk(call, 8, 2, cpus=load_cpus)
        return [run_wrk(call, connections, seconds, cpus=load_cpus).rps for _ in range(rounds)]


GUARD_ROUNDS, GUARD_SECONDS = 3, 3.0


def guard_ratio(session: Session, direct: Target, sluice: Target) -> dict[str, float]:
    """Sluice ÷ direct chat req/s at 32 connections, best of 3 short runs each: the figure bench/guard.py checks."""
    log(f"guard figure: direct and Sluice, best of {GUARD_ROUNDS}")
    best = {t.name: max(throughput(session, t, GUARD_ROUNDS, GUARD_SECONDS)) for t in (direct, sluice)}
    return {**best, "ratio": best["sluice"] / best["direct"]}
