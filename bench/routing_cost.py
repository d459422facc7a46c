"""Cost of routing (issue 15): chat through a model of four deployments behind the `latency` strategy (four
providers, each its own connection pool, all on the benchmark upstream) against a one-deployment model, loaded at
once on the gateway core (bench/paired.py); then four `latency` deployments of one provider (one connection pool:
the strategy and the pool's bookkeeping without four pools) against one; and the same pairing of two
one-deployment processes (A/A: what the method alone reads).

    .venv/bin/python bench/run.py --routing [--write docs/benchmarks.md]"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

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
    config = one_pool_config(session.run_dir)
    one = routed.target("Sluice, one deployment", "gpt-one", config=config)
    four = routed.target("Sluice, four deployments (latency)", "gpt-four", config=config)
    found: list[dict[str, float]] = []
    for start in range(starts):
        log(f"routing: one deployment against four (latency), start {start + 1} of {starts}, {count} × {seconds:g} s")
        found.append(paired.summary(paired.pairs(session, one, four, count, seconds), {}))
    log(f"routing: one deployment against four of one provider (latency, one pool), {count} × {seconds:g} s")
    one_pool = routed.target("Sluice, four deployments of one provider", ONE_POOL_MODEL, config=config)
    pooled = paired.summary(paired.pairs(session, one, one_pool, count, seconds), {})
    log(f"routing: A/A, one deployment against one, {count} × {seconds:g} s")
    same = paired.summary(paired.pairs(session, one, routed.target("Sluice, one deployment (B)", "gpt-one",
                                                                   config=config), count, seconds), {})
    return {"starts": found, "one_pool": pooled, "aa": same, "count": count, "seconds": seconds}


ONE_POOL_MODEL = "gpt-four-one-pool"


def one_pool_config(run_dir: Path) -> Path:
    """bench/sluice-routing.yaml with one more model: four `latency` deployments of the provider `up`, so one
    connection pool (their endpoints differ only in their breakers and statistics)."""
    config = yaml.safe_load(routed.CONFIG.read_text())
    config["models"].append({"name": ONE_POOL_MODEL, "strategy": "latency",
                             "deployments": [{"provider": "up", "model": ONE_POOL_MODEL}] * 4})
    path = (run_dir / "sluice-routing-cost.yaml").resolve()
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def met(figures: dict[str, Any]) -> bool:
    return all(s["ratio"] >= BOUND and s["cpu_ratio"] >= BOUND for s in figures["starts"])


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: one Sluice process per model, both on the gateway core and loaded at once (32 "
             f"connections each, {figures['count']} runs of {figures['seconds']:g} s per start, medians; ratio "
             "lowest–highest of the runs in brackets). CPU is each whole process tree's (supervisor and worker).", "",
             "| start | req/s one, four | four ÷ one (req/s) | CPU µs/req one, four | one ÷ four (CPU) "
             "| p99 ms one, four | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{index + 1}", s) for index, s in enumerate(figures["starts"])]
    if "one_pool" in figures:
        rows.append(("four of one provider (one pool) against one", figures["one_pool"]))
    rows.append(("A/A (one against one)", figures["aa"]))
    for name, s in rows:
        lines.append(f"| {name} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | **{s['ratio']:.3f}** "
                     f"({s['ratio_low']:.3f}–{s['ratio_high']:.3f}) | {s['off_cpu_us']:.0f}, {s['on_cpu_us']:.0f} "
                     f"| **{s['cpu_ratio']:.3f}** | {s['off_p99_ms']:.1f}, {s['on_p99_ms']:.1f} | {s['errors']:.0f} |")
    worst = min(min(s["ratio"], s["cpu_ratio"]) for s in figures["starts"])
    lines += ["", f"Bound: four deployments within {1 - BOUND:.0%} of one, req/s and CPU per request, in every start: "
                  f"lowest {worst:.3f}: {'met' if met(figures) else '**missed**'}. The A/A row is the method's own "
                  f"reading of two identical processes: {figures['aa']['ratio']:.3f} (req/s), "
                  f"{figures['aa']['cpu_ratio']:.3f} (CPU)."]
    if "one_pool" in figures:
        lines.append(f"Four deployments sharing one provider (one connection pool instead of four): "
                     f"{figures['one_pool']['ratio']:.3f} (req/s), {figures['one_pool']['cpu_ratio']:.3f} (CPU).")
    return lines
