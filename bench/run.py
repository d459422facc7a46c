"""Benchmark Sluice side by side with the direct upstream, nginx, the bare Python floors, LiteLLM and Portkey.

    .venv/bin/python bench/run.py [--quick] [--only sluice,floor,...] [--write docs/benchmarks.md]
    .venv/bin/python bench/run.py --variants     # only Sluice with everything off against each built variant
    .venv/bin/python bench/run.py --headline [--write docs/benchmarks.md]   # only the headline table
    .venv/bin/python bench/run.py --availability|--routing|--cache|--production|--rules|--services|--websockets
        |--frontdoors [--write docs/benchmarks.md]   # only that figure of issue 15, 16 or 19 (several may be given)

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import availability
import cache_bench
import catalog
import frontdoors
import headline
import install
import logdb
import measure
import paired
import phoenix_env
import production
import report
import routing_cost
import service_proxy
import service_rules
import ws_relay
from loadgen import median
from measure import BOTH_CPUS, Session
from paired import Pair
from targets import Target

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
    for name, figure in FIGURES.items():
        parser.add_argument(f"--{name}", action="store_true", help=f"only {figure.title.lower()} ({figure.about})")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Figure:
    """One of issue 15's figures: how to measure it, and its Markdown (between markers of its own in the doc)."""

    title: str
    about: str
    measure: Callable[[Session], dict[str, Any]]
    table: Callable[[dict[str, Any], str], list[str]]


FIGURES = {
    "availability": Figure("Availability through a failing or a dead deployment",
                           "bench/availability.py; about 3 minutes", availability.measure_availability,
                           availability.table),
    "routing": Figure("Cost of routing: four deployments against one", "bench/routing_cost.py; about 2 minutes",
                      routing_cost.measure_routing, routing_cost.table),
    "cache": Figure("Response cache: hits against misses", "bench/cache_bench.py; about 2 minutes",
                    cache_bench.measure_cache, cache_bench.table),
    "production": Figure("Production: every feature on against everything off",
                         "bench/production.py; about 4 minutes", production.measure_production, production.table),
    "rules": Figure("Service routes: a table of 1,000 rules against 10", "bench/service_rules.py; about 2 minutes",
                    service_rules.measure_rules, service_rules.table),
    "services": Figure("Service routes: proxying against the Python floor", "bench/service_proxy.py; about 5 minutes",
                       service_proxy.measure_services, service_proxy.table),
    "websockets": Figure("WebSocket relay: 1 kB echoes over 100 connections", "bench/ws_relay.py; about 2 minutes",
                         ws_relay.measure_websockets, ws_relay.table),
    "frontdoors": Figure("Front doors: /v1/messages and /v1/responses against the chat route",
                         "bench/frontdoors.py; about 4 minutes", frontdoors.measure_frontdoors, frontdoors.table),
}


def figure_markers(name: str) -> tuple[str, str]:
    return (f"<!-- {name}:begin: generated by bench/run.py (full or --{name}), edit outside these markers -->",
            f"<!-- {name}:end -->")


def render_figure(name: str, figures: dict[str, Any], command: str, machine: dict[str, str]) -> str:
    begin, end = figure_markers(name)
    figure = FIGURES[name]
    if "failed" in figures:
        body = [f"Not measured in this run: {figures['failed']}"]
    else:
        body = figure.table(figures, command)
    return "\n".join([begin, f"### {figure.title}", "", *body, "",
                      f"Measured on {machine['nproc']} cores ({machine['cpu']}), load average at start "
                      f"{machine['load_at_start']}.", end]) + "\n"


def measure_figures(session: Session, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each named figure's measurement; one that cannot be taken here says why instead."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            found[name] = FIGURES[name].measure(session)
        except (logdb.Unavailable, RuntimeError, OSError) as exc:
            measure.log(f"{name} not measured: {exc}")
            found[name] = {"failed": str(exc).splitlines()[0][:300]}
    return found


def write_figures(doc: str | None, found: dict[str, dict[str, Any]], command: str, machine: dict[str, str]) -> None:
    for name, figures in found.items():
        block = render_figure(name, figures, command, machine)
        print(block)
        if doc:
            report.write_doc(Path(doc), block, *figure_markers(name))
            measure.log(f"wrote {name} into {doc}")


def main_figures(names: list[str], command: str, doc: str | None) -> int:
    install.system_tools()
    session = Session(RUN_DIR)
    started = time.monotonic()
    try:
        found = measure_figures(session, names)
    finally:
        session.close()
    machine = catalog.machine()
    write_figures(doc, found, command, machine)
    for name, figures in found.items():
        raw = {"command": command, "machine": machine, "figures": figures, "elapsed_s": time.monotonic() - started}
        (RUN_DIR / f"{name}.json").write_text(json.dumps(raw, indent=1, default=str))
    return 0


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


def pairs(session: Session, env: dict[str, str], count: int, seconds: float,
          counters: dict[str, float] | None = None) -> list[Pair]:
    """Sluice with everything off and Sluice with `env`, loaded at once on the gateway core (`paired.pairs`)."""
    off_target = catalog.build(lambda: session.upstream_url)["sluice"]
    on_target = catalog.build(lambda: session.upstream_url, sluice_env=env)["sluice"]
    return paired.pairs(session, off_target, on_target, count, seconds, counters, pin=env)


def moderate_p99(session: Session, env: dict[str, str], starts: int = 3, connections: int = 8,
                 seconds: float = 4.0) -> tuple[float, float]:
    """Median p99 at moderate load of Sluice with everything off and with `env`, each alone (`paired.moderate_p99`)."""
    def build(on: bool) -> Target:
        return catalog.build(lambda: session.upstream_url, sluice_env=env if on else {})["sluice"]
    return paired.moderate_p99(session, build, starts, connections, seconds, pin=env)


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
    figure_names = [name for name in FIGURES if getattr(args, name)]
    if figure_names:
        return main_figures(figure_names, command, args.write)
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
        issue15 = measure_figures(session, list(FIGURES)) if not args.quick else {}
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
    write_figures(args.write, issue15, command, run.machine)
    for name, figures in issue15.items():
        (RUN_DIR / f"{name}.json").write_text(json.dumps({"command": command, "figures": figures}, indent=1,
                                                         default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
