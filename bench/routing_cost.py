"""Cost of routing (issue 15): chat through a model of four deployments behind the `latency` strategy (four
providers, each its own connection pool, all on the benchmark upstream) against a one-deployment model, loaded at
once on the gateway core (bench/paired.py), and the same pairing of two one-deployment processes (A/A: what the
method alone reads).

    .venv/bin/python bench/run.py --routing [--write docs/benchmarks.md]"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import measure
import paired
import routed
from measure import Session

STARTS, COUNT, SECONDS = 2, 8, 4.0
BOUND = 0.97
"""Issue 15: req/s and CPU per request with four deployments within 3 % of one deployment's."""


def measure_routing(session: Session, starts: int = STARTS, count: int = COUNT, seconds: float = SECONDS,
                    log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """`starts` pairings of gpt-one (off) and gpt-four (on), each of fresh processes, and one A/A pairing."""
    one = routed.target("Sluice, one deployment", "gpt-one")
    four = routed.target("Sluice, four deployments (latency)", "gpt-four")
    found: list[dict[str, float]] = []
    for start in range(starts):
        log(f"routing: one deployment against four (latency), start {start + 1} of {starts}, {count} × {seconds:g} s")
        found.append(paired.summary(paired.pairs(session, one, four, count, seconds), {}))
    log(f"routing: A/A, one deployment against one, {count} × {seconds:g} s")
    same = paired.summary(paired.pairs(session, one, routed.target("Sluice, one deployment (B)", "gpt-one"), count,
                                       seconds), {})
    return {"starts": found, "aa": same, "count": count, "seconds": seconds}


def met(figures: dict[str, Any]) -> bool:
    return all(s["ratio"] >= BOUND and s["cpu_ratio"] >= BOUND for s in figures["starts"])


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: one Sluice process per model, both on the gateway core and loaded at once (32 "
             f"connections each, {figures['count']} runs of {figures['seconds']:g} s per start, medians; ratio "
             "lowest–highest of the runs in brackets). CPU is each whole process tree's (supervisor and worker).", "",
             "| start | req/s one, four | four ÷ one (req/s) | CPU µs/req one, four | one ÷ four (CPU) "
             "| p99 ms one, four | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{index + 1}", s) for index, s in enumerate(figures["starts"])] + [("A/A (one against one)",
                                                                                   figures["aa"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | **{s['ratio']:.3f}** "
                     f"({s['ratio_low']:.3f}–{s['ratio_high']:.3f}) | {s['off_cpu_us']:.0f}, {s['on_cpu_us']:.0f} "
                     f"| **{s['cpu_ratio']:.3f}** | {s['off_p99_ms']:.1f}, {s['on_p99_ms']:.1f} | {s['errors']:.0f} |")
    worst = min(min(s["ratio"], s["cpu_ratio"]) for s in figures["starts"])
    lines += ["", f"Bound: four deployments within {1 - BOUND:.0%} of one, req/s and CPU per request, in every start: "
                  f"lowest {worst:.3f}: {'met' if met(figures) else '**missed**'}. The A/A row is the method's own "
                  f"reading of two identical processes: {figures['aa']['ratio']:.3f} (req/s), "
                  f"{figures['aa']['cpu_ratio']:.3f} (CPU)."]
    return lines
