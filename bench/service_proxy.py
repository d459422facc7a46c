"""HTTP service proxying (issue 16): GET and POST with a 2 kB body through a service route to the benchmark upstream,
against the Python floor (bench/floor_granian.py) in the same run, loaded at once on the gateway core
(bench/paired.py: the ratio of their req/s is the ratio of their CPU per request); Sluice's chat route and provider
passthrough paired with the floor the same way, for comparison; then the added p50/p99 at one connection of the
floor, nginx as a reverse proxy and Sluice's service route, each alone on the gateway core, against the upstream
directly (a copy on the gateway core).

    .venv/bin/python bench/run.py --services [--write docs/benchmarks.md]"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import catalog
import measure
import paired
from loadgen import Call, median, run_wrk
from measure import Session
from targets import ROOT, SLUICE_KEY, Launch, Target, chat_body, proxy_launch, python_launch, upstream_launch

COUNT, SECONDS = 6, 4.0
LATENCY_ROUNDS, LATENCY_SECONDS = 2, 4.0
BOUND = 1.0
"""Issue 16: a service request's req/s and CPU per request at least the Python floor's."""
BODY_BYTES = 2048


def post_body() -> bytes:
    """A chat request of exactly BODY_BYTES bytes (the upstream answers any body on `/chat/completions`)."""
    def body(content: str) -> bytes:
        return json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": content}]},
                          separators=(",", ":")).encode()
    return body("x" * (BODY_BYTES - len(body(""))))


@dataclass(frozen=True)
class Kind:
    """One request as the upstream sees it: method, upstream path, body; and Sluice's path to it."""

    name: str
    method: str
    path: str
    body: bytes
    sluice_path: str

    def call(self, port: int, path: str, headers: tuple[tuple[str, str], ...] = ()) -> Call:
        return Call(port, path, self.body, headers, self.method)


KINDS = (Kind("GET", "GET", "/v1/items/42", b"", "/svc/v1/items/42"),
         Kind("POST 2 kB", "POST", "/v1/chat/completions", post_body(), "/svc/v1/chat/completions"))
CHAT = Kind("chat route (POST, chat body)", "POST", "/v1/chat/completions", chat_body("gpt-bench"),
            "/v1/chat/completions")
PASSTHROUGH = Kind("provider passthrough (POST, chat body)", "POST", "/v1/chat/completions", chat_body("gpt-bench"),
                   "/provider/up/v1/chat/completions")
SERVICE_CHAT = Kind("service route (POST, chat body)", "POST", "/v1/chat/completions", chat_body("gpt-bench"),
                    "/svc/v1/chat/completions")

CONFIG = ('providers:\n  up: {type: openai, base_url: "${BENCH_UPSTREAM}/v1", api_key: "bench"}\n'
          "models:\n  - {name: gpt-bench, provider: up, model: gpt-bench}\n"
          "request_log: {enabled: false}\n"
          'services:\n  up: {instances: [{url: "${BENCH_UPSTREAM}"}]}\n'
          'routes:\n  - {path: "/svc/**", service: up, strip_prefix: /svc}\n')
"""One process serves the chat route, passthrough (provider `up`) and the service route, all to the upstream."""


def sluice_target(config: Path, kind: Kind) -> Target:
    def launch(port: int, upstream: str) -> Launch:
        cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1"]
        return Launch(cmd, {"SLUICE_REDIS_URL": "", "SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": upstream}, ROOT)

    def request(port: int, scenario: str) -> Call | str:
        return kind.call(port, kind.sluice_path, (("Authorization", f"Bearer {SLUICE_KEY}"),))

    return Target("sluice", f"Sluice, {kind.name}", launch, request, version=catalog.sluice_version,
                  unavailable=catalog.sluice_missing)


def relay_target(name: str, label: str, launch: Callable[[int, str], Launch], kind: Kind) -> Target:
    """A target that relays the upstream's paths as they are: the floor, nginx, the upstream itself."""
    def request(port: int, scenario: str) -> Call | str:
        return kind.call(port, kind.path)

    return Target(name, label, launch, request)


def floor(kind: Kind) -> Target:
    return relay_target("floor", "floor: granian + raw ASGI + aiohttp", python_launch("floor_granian.py"), kind)


def measure_services(session: Session, count: int = COUNT, seconds: float = SECONDS,
                     log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """Each kind paired with the floor (req/s, CPU per request), then p50/p99 at one connection of each target."""
    with tempfile.TemporaryDirectory(prefix="sluice-services-") as folder:
        config = Path(folder) / "services.yaml"
        config.write_text(CONFIG)
        pairs: dict[str, dict[str, float]] = {}
        for kind in (*KINDS, SERVICE_CHAT, CHAT, PASSTHROUGH):
            log(f"services: floor against Sluice, {kind.name}, {count} × {seconds:g} s")
            pairs[kind.name] = paired.summary(paired.pairs(session, floor(kind), sluice_target(config, kind), count,
                                                           seconds), {})
        latency = {kind.name: one_connection(session, config, kind, log) for kind in KINDS}
    return {"pairs": pairs, "latency": latency, "count": count, "seconds": seconds,
            "body_bytes": len(KINDS[1].body)}


def one_connection(session: Session, config: Path, kind: Kind, log: Callable[[str], None]
                   ) -> dict[str, dict[str, float]]:
    """p50 and p99 at one connection of each target alone on the gateway core, `LATENCY_ROUNDS` runs each in
    turn (the medians)."""
    targets = {"direct": relay_target("direct", "upstream directly", upstream_launch, kind),
               "nginx": relay_target("nginx", "nginx reverse proxy", proxy_launch, kind),
               "floor": floor(kind), "sluice": sluice_target(config, kind)}
    found: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p99": []} for name in targets}
    for round_ in range(LATENCY_ROUNDS):
        for name, target in targets.items():
            log(f"services: {kind.name} at one connection, {target.label}, round {round_ + 1}")
            with session.started(target) as (_, port):
                call = target.call(port, "chat")
                assert isinstance(call, Call)
                run_wrk(call, 4, 2)
                result = run_wrk(call, 1, LATENCY_SECONDS)
                if result.errors:
                    raise RuntimeError(f"{target.label}: {result.errors} errors on {kind.name}")
                found[name]["p50"].append(result.p50_ms)
                found[name]["p99"].append(result.p99_ms)
    return {name: {"p50": median(values["p50"]), "p99": median(values["p99"])} for name, values in found.items()}


def met(figures: dict[str, Any]) -> bool:
    return all(figures["pairs"][kind.name]["ratio"] >= BOUND and figures["pairs"][kind.name]["cpu_ratio"] >= BOUND
               for kind in KINDS)


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: the floor and one Sluice process, both on the gateway core and loaded at once (32 "
             f"connections each, {figures['count']} runs of {figures['seconds']:g} s per row, medians; ratio "
             "lowest–highest of the runs in brackets). Sluice forwards every header, sets `X-Forwarded-*`, "
             "`X-Request-ID` and the caller's identity headers, and checks the key; the floor relays method, path "
             f"and body only. GET is `/svc/v1/items/42`, POST a {figures['body_bytes']:,}-byte body to "
             "`/svc/v1/chat/completions`, both to the benchmark upstream with `/svc` stripped. CPU is each whole "
             "process tree's.", "",
             "| Sluice request | req/s floor, Sluice | Sluice ÷ floor (req/s) | CPU µs/req floor, Sluice "
             "| floor ÷ Sluice (CPU) | p99 ms floor, Sluice | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in figures["pairs"].items():
        lines.append(f"| {name} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | **{s['ratio']:.3f}** "
                     f"({s['ratio_low']:.3f}–{s['ratio_high']:.3f}) | {s['off_cpu_us']:.0f}, {s['on_cpu_us']:.0f} "
                     f"| **{s['cpu_ratio']:.3f}** | {s['off_p99_ms']:.1f}, {s['on_p99_ms']:.1f} | {s['errors']:.0f} |")
    labels = {"nginx": "nginx reverse proxy", "floor": "floor: granian + raw ASGI + aiohttp",
              "sluice": "Sluice, service route"}
    lines += ["", f"One connection, each alone on the gateway core ({LATENCY_ROUNDS} runs of {LATENCY_SECONDS:g} s "
                  "each in turn, medians), added to the upstream directly:", "",
              "| target | " + " | ".join(f"{kind} p50 / p99 ms (added)" for kind in figures["latency"]) + " |",
              "|---|" + "---:|" * len(figures["latency"])]
    for name in ("direct", "nginx", "floor", "sluice"):
        cells = []
        for values in figures["latency"].values():
            own, direct = values[name], values["direct"]
            cells.append(f"{own['p50']:.3f} / {own['p99']:.3f}" if name == "direct" else
                         f"{own['p50']:.3f} / {own['p99']:.3f} (+{own['p50'] - direct['p50']:.3f} / "
                         f"{own['p99'] - direct['p99']:+.3f})")
        lines.append(f"| {labels.get(name, 'upstream directly')} | " + " | ".join(cells) + " |")
    worst = min(min(figures["pairs"][k.name]["ratio"], figures["pairs"][k.name]["cpu_ratio"]) for k in KINDS)
    lines += ["", f"Bound: a service request's req/s and CPU per request at least the floor's, GET and POST: lowest "
                  f"{worst:.3f}: {'met' if met(figures) else '**missed**'}."]
    return lines
