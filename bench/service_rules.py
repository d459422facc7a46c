"""Cost of a large route table (issue 16): chat through a service route in a table of 1,000 rules against the same
route in a table of 10, loaded at once on the gateway core (bench/paired.py), and the A/A pairing of two
10-rule processes (what the method alone reads). The route sends `/svc/v1/chat/completions` to the benchmark
upstream with `/svc` stripped; the other rules are prefixes of their own first segments (`/f{n}/**`), the shape
a large table of services has, and a catch-all (`/**`) that every request's lookup also considers.

    .venv/bin/python bench/run.py --rules [--write docs/benchmarks.md]"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import catalog
import measure
import paired
from loadgen import Call
from measure import Session
from targets import ROOT, SLUICE_KEY, Launch, Target, chat_body

STARTS, COUNT, SECONDS = 2, 8, 4.0
BOUND = 0.95
"""Issue 16: a table of 1,000 rules costs less than 5 % of throughput against a table of 10."""
PATH = "/svc/v1/chat/completions"


def config_text(rules: int) -> str:
    """A config whose table has `rules` rules: the measured route, a catch-all and fillers."""
    fillers = "".join(f'  - {{path: "/f{n}/**", service: up}}\n' for n in range(rules - 2))
    return ("providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: mock-1}\n"
            "request_log: {enabled: false}\n"
            'services:\n  up: {instances: [{url: "${BENCH_UPSTREAM}"}]}\n'
            "routes:\n"
            '  - {path: "/svc/**", service: up, strip_prefix: /svc}\n'
            '  - {path: "/**", service: up}\n' + fillers)


def target(label: str, config: Path) -> Target:
    def launch(port: int, upstream: str) -> Launch:
        cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1"]
        return Launch(cmd, {"SLUICE_REDIS_URL": "", "SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": upstream}, ROOT)

    def request(port: int, scenario: str) -> Call | str:
        return Call(port, PATH, chat_body("gpt-bench"), (("Authorization", f"Bearer {SLUICE_KEY}"),))

    return Target("sluice", label, launch, request, version=catalog.sluice_version,
                  unavailable=catalog.sluice_missing)


def measure_rules(session: Session, starts: int = STARTS, count: int = COUNT, seconds: float = SECONDS,
                  log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """`starts` pairings of a 10-rule table (off) and a 1,000-rule table (on), each of fresh processes, and A/A."""
    with tempfile.TemporaryDirectory(prefix="sluice-rules-") as folder:
        ten, thousand = Path(folder) / "ten.yaml", Path(folder) / "thousand.yaml"
        ten.write_text(config_text(10))
        thousand.write_text(config_text(1000))
        small, large = target("Sluice, 10 rules", ten), target("Sluice, 1,000 rules", thousand)
        found: list[dict[str, float]] = []
        for start in range(starts):
            log(f"rules: 10 against 1,000, start {start + 1} of {starts}, {count} × {seconds:g} s")
            found.append(paired.summary(paired.pairs(session, small, large, count, seconds), {}))
        log(f"rules: A/A, 10 against 10, {count} × {seconds:g} s")
        same = paired.summary(paired.pairs(session, small, target("Sluice, 10 rules (B)", ten), count, seconds), {})
    return {"starts": found, "aa": same, "count": count, "seconds": seconds}


def met(figures: dict[str, Any]) -> bool:
    return all(s["ratio"] >= BOUND and s["cpu_ratio"] >= BOUND for s in figures["starts"])


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: one Sluice process per table, both on the gateway core and loaded at once (32 "
             f"connections each, {figures['count']} runs of {figures['seconds']:g} s per start, medians; ratio "
             f"lowest–highest of the runs in brackets), POST {PATH} to a service route (the benchmark upstream). "
             "CPU is each whole process tree's.", "",
             "| start | req/s 10, 1,000 rules | 1,000 ÷ 10 (req/s) | CPU µs/req 10, 1,000 | 10 ÷ 1,000 (CPU) "
             "| p99 ms 10, 1,000 | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{index + 1}", s) for index, s in enumerate(figures["starts"])] + [("A/A (10 against 10)",
                                                                                   figures["aa"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | **{s['ratio']:.3f}** "
                     f"({s['ratio_low']:.3f}–{s['ratio_high']:.3f}) | {s['off_cpu_us']:.0f}, {s['on_cpu_us']:.0f} "
                     f"| **{s['cpu_ratio']:.3f}** | {s['off_p99_ms']:.1f}, {s['on_p99_ms']:.1f} | {s['errors']:.0f} |")
    worst = min(min(s["ratio"], s["cpu_ratio"]) for s in figures["starts"])
    lines += ["", f"Bound: 1,000 rules within {1 - BOUND:.0%} of 10, req/s and CPU per request, in every start: "
                  f"lowest {worst:.3f}: {'met' if met(figures) else '**missed**'}. The A/A row is the method's own "
                  f"reading of two identical processes: {figures['aa']['ratio']:.3f} (req/s), "
                  f"{figures['aa']['cpu_ratio']:.3f} (CPU)."]
    return lines
