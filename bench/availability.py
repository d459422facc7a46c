"""Availability (issue 15): 10,000 chat requests to a model of two deployments, one healthy and one failing 30 %
of its requests at random (or one dead: connection refused), against the healthy upstream alone.

    .venv/bin/python bench/run.py --availability [--write docs/benchmarks.md]

Cases, each in a fresh process (so every breaker starts closed), `REPEATS` times in turn: the upstream directly
(a copy on the gateway core, as "upstream directly" everywhere in the bench); Sluice with only the healthy
deployment (`gpt-one`); Sluice with the healthy one and one behind the upstream's /flaky/v1 (`gpt-flaky`: 30 % of
its requests fail, half answered 503, half closed unanswered); Sluice with the healthy one and one on a port
nothing listens on (`gpt-dead`). wrk (bench/wrk/count.lua) stops after `REQUESTS` answers; a request succeeds when
it is answered 2xx, and socket errors and timeouts count as failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import catalog
import measure
import procs
import routed
from loadgen import Call, WrkResult, median, run_wrk
from measure import Session

REQUESTS, CONNECTIONS, REPEATS = 10_000, 8, 2
BOUND = 0.999
CASES = {"healthy": ("gpt-one", "Sluice, the healthy deployment alone"),
         "flaky": ("gpt-flaky", "Sluice, healthy + one failing 30 % at random"),
         "dead": ("gpt-dead", "Sluice, healthy + one dead (connection refused)")}
COUNTED = ("sluice_failovers_total", "sluice_upstream_retries_total", "sluice_circuit_breaker_transitions_total",
           "sluice_fallbacks_total")


def counted(call: Call, requests: int, connections: int, rate: float) -> WrkResult:
    """wrk until `requests` answers came. wrk's thread stops there, but the process lasts its whole `-d` (its main
    thread sleeps that long), so the run is given three times what `rate` (req/s of the warm-up) needs, and its
    req/s figure means nothing; latencies and counts are of the answers up to the stop."""
    seconds = min(120.0, 3 * requests / max(rate, 50.0) + 3)
    return run_wrk(call, connections, seconds, timeout_s=10, script="count.lua",
                   env={"BENCH_REQUESTS": str(requests)})


def _case(result: WrkResult, extra: dict[str, float] | None = None) -> dict[str, float]:
    s = result.statuses
    failed = s["answered"] - s["ok"] + s["connect"] + s["read"] + s["write"] + s["timeout"]
    sent = s["ok"] + failed
    return {"sent": float(sent), "ok": float(s["ok"]), "failed": float(failed), "s5xx": float(s["s5xx"]),
            "s4xx": float(s["s4xx"]), "socket": float(s["connect"] + s["read"] + s["write"] + s["timeout"]),
            "success": s["ok"] / sent if sent else 0.0, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "max_ms": result.max_ms, **(extra or {})}


def measure_availability(session: Session, repeats: int = REPEATS, requests: int = REQUESTS,
                         connections: int = CONNECTIONS, log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """Each case's runs (a dict per repeat) and the medians the table shows."""
    log(f"availability: {requests:,} requests at {connections} connections per case, {repeats} repeats")
    dead_port = procs.free_port()  # bound once and closed: nothing listens there
    runs: dict[str, list[dict[str, float]]] = {"direct": [], **{name: [] for name in CASES}}
    direct = catalog.build(lambda: session.upstream_url)["direct"]
    for _ in range(repeats):
        with session.started(direct) as (_, port):
            call = direct.call(port, "chat")
            assert isinstance(call, Call)
            rate = run_wrk(call, connections, 1).rps
            runs["direct"].append(_case(counted(call, requests, connections, rate)))
        for name, (model, label) in CASES.items():
            target = routed.target(label, model, {"BENCH_DEAD_PORT": str(dead_port)})
            with session.started(target) as (_, port):
                warm, call = target.call(port, "warm"), target.call(port, "chat")
                assert isinstance(warm, Call) and isinstance(call, Call)
                rate = run_wrk(warm, connections, 2).rps  # gpt-one: the code paths, not this model's deployments
                result = counted(call, requests, connections, rate)
                runs[name].append(_case(result, routed.counters(port, COUNTED)))
            log(f"availability: {name}: {runs[name][-1]['success']:.4%} of {runs[name][-1]['sent']:,.0f}, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
    return {"requests": requests, "connections": connections, "repeats": repeats, "runs": runs,
            "medians": {name: {key: median([run.get(key, 0.0) for run in found]) for key in set().union(*found)}
                        for name, found in runs.items()}}


def met(figures: dict[str, Any]) -> bool:
    return all(run["success"] >= BOUND for name in ("flaky", "dead") for run in figures["runs"][name])


def _added(figures: dict[str, Any], name: str, key: str, against: str) -> list[float]:
    """`name`'s figure minus `against`'s, repeat by repeat."""
    runs = figures["runs"]
    return [mine[key] - base[key] for mine, base in zip(runs[name], runs[against], strict=True)]


def _rate(runs: list[dict[str, float]]) -> str:
    return routed.spread([run["success"] for run in runs], "{:.2%}".format)


def table(figures: dict[str, Any], command: str) -> list[str]:
    """The section's table and verdict, as Markdown."""
    m, runs = figures["medians"], figures["runs"]
    ms = "{:+.2f}".format
    lines = [f"`{command}`: {figures['requests']:,} chat requests per case at {figures['connections']} connections "
             f"(wrk, bench/wrk/count.lua), each case in a fresh process, {figures['repeats']} repeats in turn; "
             "medians, lowest–highest of the repeats in brackets.", "",
             "| case | succeeded | failed (5xx, socket) | p50 / p99 ms | added p50 / p99 ms vs the upstream alone "
             "| vs Sluice on the healthy one alone | failovers | retries | breaker opened |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| upstream directly (the healthy one) | {_rate(runs['direct'])} "
             f"| {m['direct']['failed']:.0f} | {m['direct']['p50_ms']:.2f} / {m['direct']['p99_ms']:.2f} | — | — "
             "| — | — | — |"]
    for name, (_, label) in CASES.items():
        row = m[name]
        opened = sum(v for k, v in row.items() if k.startswith("sluice_circuit_breaker_transitions_total{")
                     and "to=open" in k)
        versus = "—" if name == "healthy" else (
            f"{routed.spread(_added(figures, name, 'p50_ms', 'healthy'), ms)} / "
            f"{routed.spread(_added(figures, name, 'p99_ms', 'healthy'), ms)}")
        lines.append(f"| {label} | {_rate(runs[name])} "
                     f"| {row['failed']:.0f} ({row['s5xx']:.0f}, {row['socket']:.0f}) "
                     f"| {row['p50_ms']:.2f} / {row['p99_ms']:.2f} "
                     f"| {routed.spread(_added(figures, name, 'p50_ms', 'direct'), ms)} / "
                     f"{routed.spread(_added(figures, name, 'p99_ms', 'direct'), ms)} | {versus} "
                     f"| {row.get('sluice_failovers_total', 0):.0f} "
                     f"| {row.get('sluice_upstream_retries_total', 0):.0f} "
                     f"| {opened:.0f} |")
    worst = min(run["success"] for name in ("flaky", "dead") for run in runs[name])
    lines += ["", f"Bound: ≥ {BOUND:.1%} of the requests succeed with a failing or a dead deployment, in every repeat: "
                  f"lowest {worst:.3%}: {'met' if met(figures) else '**missed**'}. Failovers, retries and breaker "
                  "openings are Sluice's own counters (`sluice_failovers_total`, `sluice_upstream_retries_total`, "
                  "`sluice_circuit_breaker_transitions_total{to=\"open\"}`), medians of the repeats."]
    return lines
