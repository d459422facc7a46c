"""The headline figures: what a user runs. The floor, Sluice with the request log off and Sluice as `sluice serve`
runs with no config (request log on: SQLite, one stdout line per exchange, the writer process at SCHED_IDLE),
each gateway unpinned (free to use both cores), all three started at once and loaded in turn, round after round,
in one run. CPU per request counts the whole process tree (supervisor, worker, the log writer) from the start of
a round's load until the log has written everything it was handed and the tree is idle.

    .venv/bin/python bench/run.py --headline [--write docs/benchmarks.md]

wrk and the shared upstream stay on the load core, as everywhere in the bench."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import catalog
import logdb
import measure
import procs
from drain import drained, scrape_counters, settled
from loadgen import Call, median, run_wrk
from measure import Session

ROWS = {
    "floor": "floor: granian + raw ASGI + aiohttp",
    "off": "Sluice, request log off (`request_log: {enabled: false}`)",
    "default": "Sluice, default configuration (request log on: SQLite, stdout lines)",
}
CONNECTIONS = 32
ROUNDS, SECONDS = 8, 3.0
LOG_BOUND = 1.15
"""Issue 14: the request log (SQLite default, stdout lines on) adds at most 15 % CPU per request, whole tree."""


@dataclass(frozen=True)
class Started:
    proc: procs.Proc
    port: int
    call: Call
    sluice: bool


def measure_headline(session: Session, rounds: int = ROUNDS, seconds: float = SECONDS,
                     log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """Each row's runs (a dict per round) and the medians and same-round ratios the table shows."""
    log(f"headline: floor, Sluice log off and Sluice default, unpinned, {rounds} rounds of {seconds:g} s each")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ROWS}
    with logdb.environment("sqlite") as database, contextlib.ExitStack() as stack:
        built = catalog.build(lambda: session.upstream_url)
        targets = {"floor": built["floor"], "off": built["sluice"],
                   "default": catalog.build(lambda: session.upstream_url,
                                            sluice_env={"BENCH_REQUEST_LOG": "true", **database})["sluice"]}
        started = {}
        for name, target in targets.items():
            proc, port = stack.enter_context(session.started(target, measure.BOTH_CPUS))
            call = target.call(port, "chat")
            assert isinstance(call, Call)
            run_wrk(call, 8, 2)  # warm-up
            started[name] = Started(proc, port, call, target.name == "sluice")
        names = list(ROWS)
        for index in range(rounds):  # the order turns each round: no row always runs right after another
            for name in names[index % len(names):] + names[:index % len(names)]:
                runs[name].append(_one(started[name], seconds))
    return {"rounds": rounds, "seconds": seconds, "connections": CONNECTIONS, "runs": runs, **summary(runs)}


def _one(target: Started, seconds: float) -> dict[str, float]:
    """One loaded run: req/s, p99, CPU per request by role (log backlog and the tree's settling included)."""
    if target.sluice:
        drained(target.port)
    settled(target.proc)
    counters = scrape_counters(target.port) if target.sluice else {}
    before = target.proc.cpu_by_role()
    result = run_wrk(target.call, CONNECTIONS, seconds)
    waited = (drained(target.port) if target.sluice else 0.0) + settled(target.proc)
    after = target.proc.cpu_by_role()
    later = scrape_counters(target.port) if target.sluice else {}
    requests = max(result.requests, 1)
    cpu = {role: (seconds_ - before.get(role, 0.0)) * 1e6 / requests for role, seconds_ in after.items()}
    log_counts = {name: later.get(name, 0.0) - counters.get(name, 0.0)
                  for name in ("log_written", "log_batches", "log_spilled")}
    return {"rps": result.rps, "p99_ms": result.p99_ms, "errors": float(result.errors),
            "requests": float(result.requests), "cpu_us": sum(cpu.values()), "writer_us": cpu.get("log_worker", 0.0),
            "settle_s": waited, **log_counts}


def summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians per row, and ratios taken within each round (then their median, low and high)."""
    rows = {name: {key: median([run[key] for run in found]) for key in ("rps", "p99_ms", "cpu_us", "writer_us")}
            for name, found in runs.items()}
    ratios = {
        "rps_off_floor": [o["rps"] / f["rps"] for o, f in zip(runs["off"], runs["floor"], strict=True)],
        "rps_default_floor": [d["rps"] / f["rps"] for d, f in zip(runs["default"], runs["floor"], strict=True)],
        "rps_default_off": [d["rps"] / o["rps"] for d, o in zip(runs["default"], runs["off"], strict=True)],
        "cpu_default_off": [d["cpu_us"] / o["cpu_us"] for d, o in zip(runs["default"], runs["off"], strict=True)],
        "cpu_off_floor": [o["cpu_us"] / f["cpu_us"] for o, f in zip(runs["off"], runs["floor"], strict=True)],
        "writer_share": [d["writer_us"] / o["cpu_us"] for d, o in zip(runs["default"], runs["off"], strict=True)],
    }
    written = sum(run["log_written"] for run in runs["default"])
    batches = sum(run["log_batches"] for run in runs["default"])
    return {"rows": rows,
            "ratios": {name: {"median": median(values), "low": min(values), "high": max(values)}
                       for name, values in ratios.items()},
            "log": {"written": written, "batches": batches, "mean_batch": written / batches if batches else 0.0,
                    "spilled": sum(run["log_spilled"] for run in runs["default"]),
                    "errors": sum(run["errors"] for found in runs.values() for run in found)}}


def met(figures: dict[str, Any]) -> bool:
    """Both readings within the bound: the whole trees' ratio, and the writer's CPU alone over log off's (steadier:
    the writer's CPU per exchange moves little from run to run, a gateway's own by up to 2×)."""
    ratios = figures["ratios"]
    return bool(ratios["cpu_default_off"]["median"] <= LOG_BOUND and 1 + ratios["writer_share"]["median"] <= LOG_BOUND)


def table(figures: dict[str, Any]) -> list[str]:
    """The headline table and the lines under it, as Markdown."""
    rows, ratios, log = figures["rows"], figures["ratios"], figures["log"]

    def spread(name: str, fmt: str = "{:.2f}×") -> str:
        r = ratios[name]
        return f"{fmt.format(r['median'])} ({fmt.format(r['low'])}–{fmt.format(r['high'])})"

    floor_ratio = {"floor": "1.00×", "off": spread("rps_off_floor"), "default": spread("rps_default_floor")}
    cpu_ratio = {"floor": "—", "off": "1.00×", "default": spread("cpu_default_off")}
    lines = [f"| chat, {figures['connections']} connections, gateway unpinned; medians of {figures['rounds']} rounds "
             f"of {figures['seconds']:g} s | req/s | ÷ floor (same round) | CPU ms per request, whole tree "
             "| ÷ log off (same round) | of which the log writer, ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in ROWS.items():
        row = rows[name]
        writer = f"{row['writer_us'] / 1000:.3f}" if name == "default" else "—"
        lines.append(f"| {label} | {row['rps']:,.0f} | {floor_ratio[name]} | {row['cpu_us'] / 1000:.3f} "
                     f"| {cpu_ratio[name]} | {writer} | {row['p99_ms']:.1f} |")
    verdict = "met" if met(figures) else "**missed**"
    lines += ["", f"Ratios in brackets: lowest and highest of the rounds. The request log wrote "
                  f"{log['written']:,.0f} entries in {log['batches']:,.0f} batches (mean {log['mean_batch']:.0f} per "
                  f"batch), spilled {log['spilled']:,.0f}; errors {log['errors']:.0f}. Request log on ÷ off, CPU per "
                  f"request: {ratios['cpu_default_off']['median']:.2f}×; the writer process's CPU alone "
                  f"{spread('writer_share', '{:.1%}')} of log off's; bound {LOG_BOUND:.2f}× for both: {verdict}. "
                  f"req/s on ÷ off {spread('rps_default_off')}."]
    return lines
