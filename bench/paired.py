"""Two gateways measured at once on the gateway core (their req/s ratio is their CPU-per-request ratio), and the p99
of each alone at moderate load: how every "X against Y, same run" figure of the bench is taken."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import logdb
import measure
from drain import drained, scrape_counters, settled
from loadgen import Call, WrkResult, median, run_wrk
from measure import Session
from targets import Target


@dataclass
class Pair:
    """One chat run against the baseline ("off") and, at the same time, against the variant ("on")."""

    off: WrkResult
    on: WrkResult
    off_cpu_us: float
    on_cpu_us: float


def pairs(session: Session, off_target: Target, on_target: Target, count: int, seconds: float,
          counters: dict[str, float] | None = None, pin: dict[str, str] | None = None,
          connections: int = 32) -> list[Pair]:
    """`off_target` and `on_target`, both on the gateway core and both loaded at once (a wrk each, `connections`
    connections) `count` times. The two share the core fairly (each is its own session, so its own scheduler
    group), so each gets half of it whatever else the machine does, and the ratio of their req/s is the ratio of
    their CPU per request: this machine's speed drifts by ±20 % from minute to minute, which hits both alike. Each
    therefore serves about half the req/s it would alone. CPU is each whole process tree's (`procs.Proc`). `pin`:
    the variant's environment, whose PostgreSQL backends are moved to the load core (bench/logdb.py)."""
    with session.started(off_target) as (off_proc, off_port), session.started(on_target) as (on_proc, on_port):
        off_call, on_call = off_target.call(off_port, "chat"), on_target.call(on_port, "chat")
        assert isinstance(off_call, Call) and isinstance(on_call, Call)
        run_wrk(off_call, 8, 2)
        run_wrk(on_call, 8, 2)
        logdb.pin_backends(pin or {}, measure.LOAD_CPUS)
        drained(on_port)  # the warm-up's log entries are written before the measured runs
        found = []
        start_cpu, start_roles = on_proc.cpu_seconds(), on_proc.cpu_by_role()
        for _ in range(count):
            cpu = (off_proc.cpu_seconds(), on_proc.cpu_seconds())
            with ThreadPoolExecutor(2) as pool:
                runs = [pool.submit(run_wrk, call, connections, seconds) for call in (off_call, on_call)]
                off, on = (run.result() for run in runs)
            found.append(Pair(off, on, (off_proc.cpu_seconds() - cpu[0]) * 1e6 / max(off.requests, 1),
                              (on_proc.cpu_seconds() - cpu[1]) * 1e6 / max(on.requests, 1)))
        if counters is not None:
            counters.update(scrape_counters(on_port))
            waited = drained(on_port)
            waited += settled(on_proc)
            counters["drain_s"] = waited
            served = max(sum(p.on.requests for p in found), 1)
            counters["sustained_on_cpu_us"] = (on_proc.cpu_seconds() - start_cpu) * 1e6 / served
            for role, used in on_proc.cpu_by_role().items():  # the same, by process: gateway, log_worker, span_worker
                counters[f"role_{role}_us"] = (used - start_roles.get(role, 0.0)) * 1e6 / served
        return found


def moderate_p99(session: Session, build: Callable[[bool], Target], starts: int = 3, connections: int = 8,
                 seconds: float = 4.0, pin: dict[str, str] | None = None) -> tuple[float, float]:
    """Median p99 at moderate load of `build(False)` (the baseline) and `build(True)` (the variant), each alone on
    the gateway core, started in turn `starts` times, two runs each (pairs share the core, which says little of
    p99)."""
    found: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(starts):
        for on in (False, True):
            target = build(on)
            with session.started(target) as (_, port):
                call = target.call(port, "chat")
                assert isinstance(call, Call)
                run_wrk(call, connections, 2)
                if on:
                    logdb.pin_backends(pin or {}, measure.LOAD_CPUS)
                    drained(port)
                found[on] += [run_wrk(call, connections, seconds).p99_ms for _ in range(2)]
    return median(found[False]), median(found[True])


def summary(found: list[Pair], counters: dict[str, float]) -> dict[str, float]:
    """Medians over the pairs: req/s, p99 and CPU per request, off and on, and the ratios taken within each pair;
    with `counters` (from `pairs`), the variant's CPU per request counting what its helpers did after the runs."""
    figures = {"pairs": float(len(found)),
               "off_rps": median([p.off.rps for p in found]), "on_rps": median([p.on.rps for p in found]),
               "ratio": median([p.on.rps / p.off.rps for p in found if p.off.rps]),
               "ratio_low": min(p.on.rps / p.off.rps for p in found if p.off.rps),
               "ratio_high": max(p.on.rps / p.off.rps for p in found if p.off.rps),
               "off_p99_ms": median([p.off.p99_ms for p in found]), "on_p99_ms": median([p.on.p99_ms for p in found]),
               "off_cpu_us": median([p.off_cpu_us for p in found]), "on_cpu_us": median([p.on_cpu_us for p in found]),
               "cpu_ratio": median([p.off_cpu_us / p.on_cpu_us for p in found if p.on_cpu_us]),
               "errors": float(sum(p.on.errors + p.off.errors for p in found))}
    if "sustained_on_cpu_us" in counters:
        figures["sustained_cpu_ratio"] = figures["off_cpu_us"] / counters["sustained_on_cpu_us"]
    return figures
