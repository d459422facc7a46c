"""Benchmark Sluice side by side with the direct upstream, nginx, the bare Python floors, LiteLLM and Portkey.

    .venv/bin/python bench/run.py [--quick] [--only sluice,floor,...] [--write docs/benchmarks.md]

Gateways run on core 0; wrk, the stream timer and the shared upstream on core 1. Prints one report, writes the raw
figures to bench/.run/{quick,full}.json and, with --write, the report into the doc between its markers."""

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
import measure
import report
from measure import BOTH_CPUS, Session, TargetResult

BENCH = Path(__file__).resolve().parent
RUN_DIR = BENCH / ".run"


@dataclass(frozen=True)
class Variant:
    """A Sluice feature switched on by environment; measured on chat once `built` is true."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    built: bool = False


VARIANTS = (
    Variant("request log on (SQLite, the default)", {"SLUICE_REQUEST_LOG": "sqlite"}),
    Variant("request log on (PostgreSQL)", {"SLUICE_REQUEST_LOG": "postgresql"}),
    Variant("tracing on (live Phoenix)", {"SLUICE_TRACING": "phoenix"}),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="direct, floor and Sluice on chat only (< 2 minutes)")
    parser.add_argument("--only", help=f"comma-separated targets out of {','.join(catalog.ORDER)} (direct is "
                                       "always measured: every added figure is relative to it)")
    parser.add_argument("--write", metavar="DOC", help="write the report into this Markdown file")
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
        target = catalog.build(lambda: session.upstream_url, sluice_env=variant.env)["sluice"]
        rps = max(measure.throughput(session, target, 3, plan.step_s))
        out[variant.name] = f"{rps / base.chat_rps:.0%} of log/tracing off" if base and base.chat_rps else f"{rps:.0f}"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    plan = measure.QUICK if args.quick else measure.FULL
    mode = "quick" if args.quick else "full"
    install.system_tools()
    session = Session(RUN_DIR)
    try:
        targets = catalog.build(lambda: session.upstream_url)
        results = {name: measure.measure_target(session, targets[name], plan) for name in selected(args)}
        command = shlex.join([".venv/bin/python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
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
