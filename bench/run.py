"""Benchmark Sluice side by side with the direct upstream, nginx, the bare Python floors, LiteLLM and Portkey.

    .venv/bin/python bench/run.py [--quick] [--only sluice,floor,...] [--write docs/benchmarks.md]
    .venv/bin/python bench/run.py --variants     # only Sluice with everything off against each built variant

Gateways run on core 0; wrk, the stream timer and the shared upstream on core 1. Prints one report, writes the raw
figures to bench/.run/{quick,full,variants}.json and, with --write, the report into the doc between its markers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import catalog
import install
import logdb
import measure
import report
from loadgen import Call, WrkResult, run_wrk
from measure import BOTH_CPUS, Session, TargetResult

BENCH = Path(__file__).resolve().parent
RUN_DIR = BENCH / ".run"


@dataclass(frozen=True)
class Variant:
    """A Sluice feature switched on by environment; measured on chat once `built` is true. `database` ("sqlite"
    or "postgresql") gives the request log a fresh database for the measurement (bench/logdb.py)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    built: bool = False
    database: str | None = None


VARIANTS = (
    Variant("request log on (SQLite, the default)", {"BENCH_REQUEST_LOG": "true"}, True, "sqlite"),
    Variant("request log on (PostgreSQL)", {"BENCH_REQUEST_LOG": "true"}, True, "postgresql"),
    Variant("tracing on (live Phoenix)", {"SLUICE_TRACING": "phoenix"}),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="direct, floor and Sluice on chat only (< 2 minutes)")
    parser.add_argument("--only", help=f"comma-separated targets out of {','.join(catalog.ORDER)} (direct is "
                                       "always measured: every added figure is relative to it)")
    parser.add_argument("--write", metavar="DOC", help="write the report into this Markdown file")
    parser.add_argument("--variants", action="store_true",
                        help="only Sluice (everything off) against each built variant, best of 3 runs, twice over")
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[str]:
    names = args.only.split(",") if args.only else list(catalog.QUICK if args.quick else catalog.ORDER)
    unknown = set(names) - set(catalog.ORDER)
    if unknown:
        raise SystemExit(f"bench: unknown target(s) {', '.join(sorted(unknown))}; choose from {catalog.ORDER}")
    return ["direct", *[n for n in catalog.ORDER if n in names and n != "direct"]]


def scale_workers(session: Session, plan: measure.Plan) -> dict[str, float]:
    """Sluice with 1 and 2 workers, both on cores 0-1 with wrk: best of 3 runs each."""
    rounds, seconds = 3, plan.step_s
    one = catalog.build(lambda: session.upstream_url)["sluice"]
    two = catalog.build(lambda: session.upstream_url, sluice_workers=2)["sluice"]
    best = [max(measure.throughput(session, t, rounds, seconds, BOTH_CPUS, BOTH_CPUS)) for t in (one, two)]
    return {"one": best[0], "two": best[1], "rounds": rounds}


def measure_variants(session: Session, plan: measure.Plan, base: TargetResult | None) -> dict[str, str]:
    out = {}
    for variant in VARIANTS:
        if not variant.built:
            out[variant.name] = "n/a (feature not built yet)"
            continue
        try:
            with logdb.environment(variant.database) as env:
                rps = max(run.rps for run in _chat_runs(session, {**variant.env, **env}, 3, plan.step_s))
        except (logdb.Unavailable, RuntimeError, OSError) as exc:
            out[variant.name] = f"n/a ({str(exc).splitlines()[0][:160]})"
            continue
        out[variant.name] = f"{rps / base.chat_rps:.0%} of log/tracing off" if base and base.chat_rps else f"{rps:.0f}"
    return out


OFF = Variant("Sluice, log and tracing off", built=True)


def _chat_runs(session: Session, env: dict[str, str], rounds: int, seconds: float) -> list[WrkResult]:
    """Sluice started with `env`: chat at 32 connections, `rounds` runs after a warm-up (which also connects the
    request log to its database, whose server processes are then pinned to the load core)."""
    target = catalog.build(lambda: session.upstream_url, sluice_env=env)["sluice"]
    with session.started(target) as (_proc, port):
        call = target.call(port, "chat")
        assert isinstance(call, Call)
        run_wrk(call, 8, 2)
        logdb.pin_backends(env, measure.LOAD_CPUS)
        return [run_wrk(call, 32, seconds) for _ in range(rounds)]


def compare_variants(session: Session, seconds: float, passes: int = 2, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Sluice with everything off, then each built variant, `passes` times in turn (so drift hits all alike): chat
    at 32 connections, the best of `rounds` runs of every pass kept, with the p99 of that run."""
    best: dict[str, WrkResult] = {}
    failed: dict[str, str] = {}
    for _ in range(passes):
        for variant in (OFF, *(v for v in VARIANTS if v.built)):
            measure.log(f"variants: {variant.name}")
            try:
                with logdb.environment(variant.database) as env:
                    runs = _chat_runs(session, {**variant.env, **env}, rounds, seconds)
            except (logdb.Unavailable, RuntimeError, OSError) as exc:
                failed[variant.name] = str(exc).splitlines()[0][:160]
                continue
            top = max(runs, key=lambda run: run.rps)
            if variant.name not in best or top.rps > best[variant.name].rps:
                best[variant.name] = top
    off = best.get(OFF.name)
    figures = {name: {"rps": run.rps, "p99_ms": run.p99_ms, "errors": float(run.errors),
                      "ratio": run.rps / off.rps if off and off.rps else 0.0} for name, run in best.items()}
    figures.update({name: {"failed": 1.0} for name in failed if name not in best})
    for name, reason in failed.items():
        measure.log(f"variants: {name} not measured: {reason}")
    return figures


def variants_report(figures: dict[str, dict[str, float]], seconds: float, command: str) -> str:
    lines = [f"Chat at 32 connections, best of 3 runs of {seconds:g} s in each of 2 passes; `{command}`", "",
             "| Sluice | req/s | ÷ log and tracing off | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    for name, figure in figures.items():
        if "failed" in figure:
            lines.append(f"| {name} | not measured | | | |")
            continue
        lines.append(f"| {name} | {figure['rps']:,.0f} | {figure['ratio']:.3f} | {figure['p99_ms']:.1f} "
                     f"| {figure['errors']:.0f} |")
    return "\n".join(lines)


def main_variants(command: str) -> int:
    install.system_tools()
    session = Session(RUN_DIR)
    started = time.monotonic()
    try:
        figures = compare_variants(session, measure.FULL.step_s)
    finally:
        session.close()
    print(variants_report(figures, measure.FULL.step_s, command))
    raw = {"command": command, "machine": catalog.machine(), "figures": figures,
           "elapsed_s": time.monotonic() - started}
    (RUN_DIR / "variants.json").write_text(json.dumps(raw, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    if args.variants:
        return main_variants(command)
    started = time.monotonic()
    plan = measure.QUICK if args.quick else measure.FULL
    mode = "quick" if args.quick else "full"
    install.system_tools()
    session = Session(RUN_DIR)
    try:
        targets = catalog.build(lambda: session.upstream_url)
        results = {name: measure.measure_target(session, targets[name], plan) for name in selected(args)}
        run = report.Run(mode, command, catalog.machine(), results)
        sluice = results.get("sluice")
        if not args.quick and sluice and sluice.status == "ok":
            measure.log("measuring Sluice with 1 and 2 workers")
            run.workers = scale_workers(session, plan)
        run.variants = measure_variants(session, plan, sluice) if not args.quick else {}
        if sluice and sluice.status == "ok":
            run.guard = measure.guard_ratio(session, targets["direct"], targets["sluice"])
    finally:
        session.close()
    run.elapsed_s = time.monotonic() - started
    block = report.render(run)
    print(block)
    raw = {**dataclasses.asdict(run), "guard_ratio": run.guard_ratio()}
    (RUN_DIR / f"{mode}.json").write_text(json.dumps(raw, indent=1, default=str))
    if args.write:
        report.write_doc(Path(args.write), block)
        measure.log(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
