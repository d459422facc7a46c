"""WebSocket relay (issue 16): 1 kB binary echoes over 100 connections through Sluice's `websocket: true` route,
beside a bare `websockets` relay (bench/ws_bare_relay.py) and nginx as a WebSocket reverse proxy, all in front of
one loopback echo server (bench/ws_echo.py, on the load core); messages/s and the relay's CPU per message at 100
connections, and the round trip at one connection against the echo server directly. Each relay runs alone on the
gateway core, the load (bench/ws_load.py) on the load core; the targets are measured in turn, `ROUNDS` times,
and the ratios are taken within each round.

    .venv/bin/python bench/run.py --websockets [--write docs/benchmarks.md]"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import measure
import procs
from loadgen import median
from measure import GATEWAY_CPUS, LOAD_CPUS, Session
from targets import BENCH, ROOT, SLUICE_KEY, Launch, python_launch, ws_proxy_launch

ROUNDS, SECONDS, LATENCY_SECONDS = 2, 4.0, 3.0
CONNECTIONS, SIZE = 100, 1024
PATH = "/echo"
CONFIG = ("providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: mock-1}\n"
          "request_log: {enabled: false}\n"
          'services:\n  echo: {instances: [{url: "${BENCH_UPSTREAM}"}]}\n'
          'routes:\n  - {path: "/ws/**", service: echo, websocket: true, strip_prefix: /ws}\n')


@dataclass(frozen=True)
class Relay:
    """One thing to measure: how to start it in front of the echo server, the path and headers a client uses."""

    name: str
    label: str
    launch: Callable[[int, str], Launch] | None
    """None: the echo server itself (the baseline)."""
    path: str = PATH
    headers: tuple[str, ...] = ()


def sluice_launch(config: Path) -> Callable[[int, str], Launch]:
    def launch(port: int, upstream: str) -> Launch:
        cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1"]
        return Launch(cmd, {"SLUICE_REDIS_URL": "", "SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": upstream}, ROOT)
    return launch


def relays(config: Path) -> list[Relay]:
    return [Relay("direct", "echo server directly", None),
            Relay("bare", "bare `websockets` relay (Python)", python_launch("ws_bare_relay.py")),
            Relay("nginx", "nginx WebSocket reverse proxy", ws_proxy_launch),
            Relay("sluice", "Sluice, websocket route", sluice_launch(config), "/ws" + PATH,
                  (f"Authorization: Bearer {SLUICE_KEY}",))]


def _status(path: str) -> Callable[[Any], int]:
    def probe(conn: Any) -> int:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return int(response.status)  # a WebSocket endpoint answers a plain GET with 426 (or 400)
    return probe


@contextmanager
def started(session: Session, name: str, launch: Callable[[int, str], Launch], upstream: str, cpus: str,
            path: str) -> Iterator[tuple[procs.Proc, int]]:
    port = procs.free_port()
    spec = launch(port, upstream)
    proc = procs.start(name, spec.cmd, cpus=cpus, log_dir=session.run_dir, env=spec.env, cwd=spec.cwd)
    try:
        procs.wait_ready(proc, port, _status(path), 30)
        yield proc, port
    finally:
        proc.stop()


def load(port: int, relay: Relay, connections: int, seconds: float) -> dict[str, float]:
    cmd = ["taskset", "-c", LOAD_CPUS, str(ROOT / ".venv/bin/python"), str(BENCH / "ws_load.py"), "--url",
           f"ws://127.0.0.1:{port}{relay.path}", "--connections", str(connections), "--seconds", str(seconds),
           "--size", str(SIZE), *(part for header in relay.headers for part in ("--header", header))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"ws_load failed on {relay.label}: {(out.stderr or out.stdout).strip()[-300:]}")
    found: dict[str, float] = json.loads(lines[-1])
    return found


def measure_one(session: Session, relay: Relay, echo_port: int) -> dict[str, float]:
    """Round trip at one connection, then messages/s and CPU per message at `CONNECTIONS` connections."""
    upstream = f"http://127.0.0.1:{echo_port}"
    if relay.launch is None:
        single = load(echo_port, relay, 1, LATENCY_SECONDS)
        loaded = load(echo_port, relay, CONNECTIONS, SECONDS)
        return {"p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"], "rps": loaded["messages"] / loaded["seconds"],
                "loaded_p99_ms": loaded["p99_ms"], "cpu_us": 0.0}
    with started(session, relay.name, relay.launch, upstream, GATEWAY_CPUS, relay.path) as (proc, port):
        load(port, relay, 8, 1.0)  # warm-up
        single = load(port, relay, 1, LATENCY_SECONDS)
        before = proc.cpu_seconds()
        loaded = load(port, relay, CONNECTIONS, SECONDS)
        used = proc.cpu_seconds() - before
    return {"p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"], "rps": loaded["messages"] / loaded["seconds"],
            "loaded_p99_ms": loaded["p99_ms"], "cpu_us": used * 1e6 / max(loaded["messages"], 1)}


def measure_websockets(session: Session, rounds: int = ROUNDS, log: Callable[[str], None] = measure.log
                       ) -> dict[str, Any]:
    """Every relay in turn, `rounds` times, in front of one echo server on the load core."""
    with tempfile.TemporaryDirectory(prefix="sluice-ws-") as folder:
        config = Path(folder) / "ws.yaml"
        config.write_text(CONFIG)
        targets = relays(config)
        found: dict[str, list[dict[str, float]]] = {relay.name: [] for relay in targets}
        with started(session, "ws_echo", python_launch("ws_echo.py"), "", LOAD_CPUS, "/") as (_, echo_port):
            for round_ in range(rounds):
                for relay in targets if round_ % 2 == 0 else list(reversed(targets)):
                    log(f"websockets: {relay.label}, round {round_ + 1} of {rounds}")
                    found[relay.name].append(measure_one(session, relay, echo_port))
                    time.sleep(0.5)
    labels = {relay.name: relay.label for relay in targets}
    return {"rounds": found, "labels": labels, "count": rounds, "seconds": SECONDS, "connections": CONNECTIONS,
            "size": SIZE}


def _per_round(figures: dict[str, Any], name: str, key: str) -> list[float]:
    return [run[key] for run in figures["rounds"][name]]


def _ratio(figures: dict[str, Any], name: str, against: str) -> list[float]:
    return [own["rps"] / other["rps"] for own, other in zip(figures["rounds"][name], figures["rounds"][against],
                                                             strict=True) if other["rps"]]


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: {figures['size']:,}-byte binary messages, each client sending one and waiting for its "
             f"echo (closed loop), {figures['connections']} connections for {figures['seconds']:g} s and one "
             "connection for the round trip; the echo server (`websockets` on uvloop) and the load on the load core, "
             f"each relay alone on the gateway core; {figures['count']} rounds, the targets in turn (order reversed "
             "every other round), medians (lowest–highest of the rounds in brackets). CPU is the relay's whole "
             "process tree's, per message echoed (each message crosses it twice).", "",
             f"| target | messages/s at {figures['connections']} conn | ÷ bare relay | ÷ nginx | relay CPU µs/message "
             "| round trip p50 / p99 ms (1 conn) | added p50 / p99 ms | p99 ms at 100 conn |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    direct = {key: median(_per_round(figures, "direct", key)) for key in ("p50_ms", "p99_ms")}
    for name, label in figures["labels"].items():
        rps = _per_round(figures, name, "rps")
        p50, p99 = median(_per_round(figures, name, "p50_ms")), median(_per_round(figures, name, "p99_ms"))
        bare = _ratio(figures, name, "bare")
        nginx = _ratio(figures, name, "nginx")
        cpu = median(_per_round(figures, name, "cpu_us"))
        added = "—" if name == "direct" else f"+{p50 - direct['p50_ms']:.3f} / {p99 - direct['p99_ms']:+.3f}"
        lines.append(f"| {label} | {median(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) "
                     f"| {'—' if name == 'bare' else _spread(bare)} | {'—' if name == 'nginx' else _spread(nginx)} "
                     f"| {'—' if name == 'direct' else f'{cpu:.0f}'} | {p50:.3f} / {p99:.3f} | {added} "
                     f"| {median(_per_round(figures, name, 'loaded_p99_ms')):.1f} |")
    sluice = median(_ratio(figures, "sluice", "bare"))
    lines += ["", f"Sluice's websocket route against the bare relay in the same rounds: **{sluice:.2f}×** the "
                  "messages/s. The load generator is one Python process on the load core, so the direct and nginx "
                  "rows are the load's ceiling rather than theirs."]
    return lines


def _spread(values: list[float]) -> str:
    return f"{median(values):.2f}× ({min(values):.2f}–{max(values):.2f})" if values else "—"
