"""Benchmark Sluice side by side with the direct upstream, nginx, the bare Python floors, LiteLLM and Portkey.

    .venv/bin/python bench/run.py [--quick] [--only sluice,floor,...] [--write docs/benchmarks.md]
    .venv/bin/python bench/run.py --variants     # only Sluice with everything off against each built variant
    .venv/bin/python bench/run.py --headline [--write docs/benchmarks.md]   # only the headline table

The headline (bench/headline.py): the floor, Sluice with the request log off and Sluice's default configuration,
each gateway unpinned, loaded in turn in one run. Everything else: gateways run on core 0; wrk, the stream timer and
the shared upstream on core 1. Prints one report, writes the raw figures to
bench/.run/{quick,full,variants,headline}.json and, with --write, the report into the doc between its markers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import catalog
import headline
import install
import logdb
import measure
import phoenix_env
import report
from drain import drained, scrape_counters, settled
from loadgen import Call, WrkResult, median, run_wrk
from measure import BOTH_CPUS, Session

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
    phoenix: bool = False
    """Start a live Phoenix for the variant (bench/phoenix_env.py) and send it the traces."""


VARIANTS = (
    Variant("request log on (SQLite, the default)", {"BENCH_REQUEST_LOG": "true"}, True, "sqlite"),
    Variant("request log on (PostgreSQL)", {"BENCH_REQUEST_LOG": "true"}, True, "postgresql"),
    Variant("tracing on (live Phoenix)", {}, True, phoenix=True),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="direct, floor and Sluice on chat only (< 2 minutes)")
    parser.add_argument("--only", help=f"comma-separated targets out of {','.join(catalog.ORDER)} (direct is "
                                       "always measured: every added figure is relative to it)")
    parser.add_argument("--write", metavar="DOC", help="write the report into this Markdown file")
    parser.add_argument("--headline", action="store_true",
                        help="only the headline table: floor, Sluice log off and Sluice default, unpinned "
                             f"({headline.ROUNDS} rounds of {headline.SECONDS:g} s each; about 2 minutes)")
    parser.add_argument("--variants", action="store_true",
                        help="only each built variant against Sluice with everything off, both loaded at once "
                             "(8 runs of 4 s each; about 90 s)")
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


def measure_variants(session: Session, figures: dict[str, dict[str, float]]) -> dict[str, str]:
    """The report's variant rows: each built variant against everything off, both loaded at once (`pairs`); each
    variant's figures go into `figures`."""
    out = {}
    for variant in VARIANTS:
        if not variant.built:
            out[variant.name] = "n/a (feature not built yet)"
            continue
        try:
            figure = figures[variant.name] = measure_variant(session, variant, 8, 4.0)
        except (logdb.Unavailable, RuntimeError, OSError) as exc:
            out[variant.name] = f"n/a ({str(exc).splitlines()[0][:160]})"
            continue
        out[variant.name] = (f"{figure['ratio']:.1%} of log/tracing off (req/s, both loaded at once; gateway CPU "
                             f"per request: {figure['cpu_ratio']:.1%}; median of 8 runs){_dropped(figure)}"
                             f"{_backlog(figure)}; p99 at 8 connections, each alone: {figure['p99_8c_off_ms']:.2f} "
                             f"→ {figure['p99_8c_on_ms']:.2f} ms")
    return out


@dataclass
class Pair:
    """One chat run against Sluice with everything off and, at the same time, against a variant."""

    off: WrkResult
    on: WrkResult
    off_cpu_us: float
    on_cpu_us: float


def pairs(session: Session, env: dict[str, str], count: int, seconds: float,
          counters: dict[str, float] | None = None) -> list[Pair]:
    """Sluice with everything off and Sluice with `env`, both on the gateway core and both loaded at once (a wrk
    each, 32 connections) `count` times. The two share the core fairly (each is its own session, so its own
    scheduler group), so each gets half of it whatever else the machine does, and the ratio of their req/s is the
    ratio of their CPU per request: this machine's speed drifts by ±20 % from minute to minute, which hits both
    alike. Each therefore serves about half the req/s it would alone."""
    off_target = catalog.build(lambda: session.upstream_url)["sluice"]
    on_target = catalog.build(lambda: session.upstream_url, sluice_env=env)["sluice"]
    with session.started(off_target) as (off_proc, off_port), session.started(on_target) as (on_proc, on_port):
        off_call, on_call = off_target.call(off_port, "chat"), on_target.call(on_port, "chat")
        assert isinstance(off_call, Call) and isinstance(on_call, Call)
        run_wrk(off_call, 8, 2)
        run_wrk(on_call, 8, 2)
        logdb.pin_backends(env, measure.LOAD_CPUS)
        drained(on_port)  # the warm-up's log entries are written before the measured runs
        found = []
        start_cpu = on_proc.cpu_seconds()
        for _ in range(count):
            cpu = (off_proc.cpu_seconds(), on_proc.cpu_seconds())
            with ThreadPoolExecutor(2) as pool:
                runs = [pool.submit(run_wrk, call, 32, seconds) for call in (off_call, on_call)]
                off, on = (run.result() for run in runs)
            found.append(Pair(off, on, (off_proc.cpu_seconds() - cpu[0]) * 1e6 / max(off.requests, 1),
                              (on_proc.cpu_seconds() - cpu[1]) * 1e6 / max(on.requests, 1)))
        if counters is not None:
            counters.update(scrape_counters(on_port))
            waited = drained(on_port)
            waited += settled(on_proc)
            counters["drain_s"] = waited
            counters["sustained_on_cpu_us"] = ((on_proc.cpu_seconds() - start_cpu) * 1e6
                                               / max(sum(p.on.requests for p in found), 1))
        return found


def moderate_p99(session: Session, env: dict[str, str], starts: int = 3, connections: int = 8,
                 seconds: float = 4.0) -> tuple[float, float]:
    """Median p99 at moderate load of Sluice with everything off and with `env`, each alone on the gateway core,
    started in turn `starts` times, two runs each (the pairs above share the core, which says little of p99)."""
    found: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(starts):
        for on in (False, True):
            target = catalog.build(lambda: session.upstream_url, sluice_env=env if on else {})["sluice"]
            with session.started(target) as (_, port):
                call = target.call(port, "chat")
                assert isinstance(call, Call)
                run_wrk(call, connections, 2)
                if on:
                    logdb.pin_backends(env, measure.LOAD_CPUS)
                    drained(port)
                found[on] += [run_wrk(call, connections, seconds).p99_ms for _ in range(2)]
    return median(found[False]), median(found[True])


def measure_variant(session: Session, variant: Variant, count: int, seconds: float) -> dict[str, float]:
    """Medians over the pairs: req/s, p99, gateway CPU per request, off and on, and the ratios of each pair."""
    counters: dict[str, float] = {}
    with logdb.environment(variant.database) as env, \
            phoenix_env.environment(variant.phoenix, measure.LOAD_CPUS) as phoenix:
        found = pairs(session, {**variant.env, **env, **phoenix}, count, seconds, counters)
        p99_off, p99_on = moderate_p99(session, {**variant.env, **env, **phoenix})
    return {**counters, "p99_8c_off_ms": p99_off, "p99_8c_on_ms": p99_on, "phoenix": float(variant.phoenix),
            "pairs": float(count), "seconds": seconds,
            "off_rps": median([p.off.rps for p in found]), "on_rps": median([p.on.rps for p in found]),
            "ratio": median([p.on.rps / p.off.rps for p in found if p.off.rps]),
            "off_p99_ms": median([p.off.p99_ms for p in found]), "on_p99_ms": median([p.on.p99_ms for p in found]),
            "off_cpu_us": median([p.off_cpu_us for p in found]), "on_cpu_us": median([p.on_cpu_us for p in found]),
            "cpu_ratio": median([p.off_cpu_us / p.on_cpu_us for p in found if p.on_cpu_us]),
            "sustained_cpu_ratio": median([p.off_cpu_us for p in found]) / counters["sustained_on_cpu_us"],
            "errors": float(sum(p.on.errors + p.off.errors for p in found))}


def compare_variants(session: Session, count: int = 8, seconds: float = 4.0) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        if not variant.built:
            continue
        measure.log(f"variants: {variant.name}, {count} runs of {seconds:g} s, everything off alongside")
        try:
            figures[variant.name] = measure_variant(session, variant, count, seconds)
        except (logdb.Unavailable, RuntimeError, OSError) as exc:
            measure.log(f"variants: {variant.name} not measured: {exc}")
            figures[variant.name] = {"failed": 1.0}
    return figures


def _dropped(figure: dict[str, float]) -> str:
    """How many spans the tracing variant could not export at saturation (its exporter runs at nice 10)."""
    if not figure.get("phoenix") or not figure.get("answered"):
        return ""
    return f"; spans dropped: {figure['spans_dropped'] / figure['answered']:.1%} of {figure['answered']:,.0f}"


def _backlog(figure: dict[str, float]) -> str:
    """What the runs left for a lower-priority helper, and the CPU ratio once that is done too."""
    if figure.get("drain_s", 0.0) < 0.2:
        return ""
    spilled = f", {figure['log_spilled']:,.0f} entries spilled to disk meanwhile" if figure.get("log_spilled") else ""
    return (f"; its helper process finished its backlog {figure['drain_s']:.1f} s after the runs{spilled}, "
            f"counting that CPU: {figure['sustained_cpu_ratio']:.1%}")


def variants_report(figures: dict[str, dict[str, float]], command: str) -> str:
    lines = ["Chat, each variant loaded at the same time as Sluice with everything off (32 connections each, both on "
             f"the gateway core, so each gets half of it; medians of the runs). `{command}`", "",
             "| variant | runs × s | req/s off, on | on ÷ off | p99 ms off, on | gateway CPU µs/req off, on "
             "| off ÷ on (CPU) | backlog written after, s | off ÷ on (CPU, backlog included) "
             "| p99 ms at 8 conn, each alone: off, on | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in figures.items():
        if "failed" in f:
            lines.append(f"| {name} | not measured | | | | | | | | | |")
            continue
        lines.append(f"| {name} | {f['pairs']:.0f} × {f['seconds']:g} | {f['off_rps']:,.0f}, {f['on_rps']:,.0f} "
                     f"| **{f['ratio']:.3f}** | {f['off_p99_ms']:.1f}, {f['on_p99_ms']:.1f} "
                     f"| {f['off_cpu_us']:.0f}, {f['on_cpu_us']:.0f} | {f['cpu_ratio']:.3f} | {f['drain_s']:.1f} "
                     f"| {f['sustained_cpu_ratio']:.3f} | {f['p99_8c_off_ms']:.2f}, {f['p99_8c_on_ms']:.2f} "
                     f"| {f['errors']:.0f}"
                     f"{_dropped(f)} |")
    return "\n".join(lines)


def main_variants(command: str) -> int:
    install.system_tools()
    session = Session(RUN_DIR)
    started = time.monotonic()
    try:
        figures = compare_variants(session)
    finally:
        session.close()
    print(variants_report(figures, command))
    raw = {"command": command, "machine": catalog.machine(), "figures": figures,
           "elapsed_s": time.monotonic() - started}
    (RUN_DIR / "variants.json").write_text(json.dumps(raw, indent=1))
    return 0


def main_headline(command: str, doc: str | None) -> int:
    install.system_tools()
    session = Session(RUN_DIR)
    started = time.monotonic()
    try:
        figures = headline.measure_headline(session)
    finally:
        session.close()
    machine = catalog.machine()
    block = report.render_headline(figures, command, machine)
    print(block)
    raw = {"command": command, "machine": machine, "figures": figures, "elapsed_s": time.monotonic() - started}
    (RUN_DIR / "headline.json").write_text(json.dumps(raw, indent=1))
    if doc:
        report.write_doc(Path(doc), block, report.HEADLINE_BEGIN, report.HEADLINE_END)
        measure.log(f"wrote the headline into {doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    if args.variants:
        return main_variants(command)
    if args.headline:
        return main_headline(command, args.write)
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
        if not args.quick and "floor" in results and sluice and sluice.status == "ok":
            run.headline = headline.measure_headline(session)
        run.variants = measure_variants(session, run.variant_figures) if not args.quick else {}
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
        if run.headline:
            report.write_doc(Path(args.write), report.render_headline(run.headline, command, run.machine),
                             report.HEADLINE_BEGIN, report.HEADLINE_END)
        measure.log(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
