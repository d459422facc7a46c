"""The "production" variant (issue 15): every feature a real deployment turns on at once, against everything off,
in the same run.

    .venv/bin/python bench/run.py --production [--write docs/benchmarks.md]

On: a managed key (`sluice keys create` against the variant's database) with its own requests- and tokens-per-minute
limits, a per-address limit, all kept in Redis (SLUICE_REDIS_URL, a `limits.redis_prefix` of this run's own,
deleted afterwards); the request log in a fresh PostgreSQL database (bench/logdb.py, dropped afterwards); traces
to a live Phoenix (bench/phoenix_env.py); a model of two deployments (`gpt-two`). The limits are far above what
the bench sends: every request is checked and counted, none refused. Off: a static key, no limits, no log, no
tracing, one deployment (`gpt-one`). Both on bench/sluice-routing.yaml, measured as bench/paired.py does (at once
on the gateway core, whole process trees: worker, log writer, span exporter), then each alone at 8 connections
for p99. PostgreSQL's backends and Phoenix run on the load core at idle priority (in production they have machines
of their own); Redis is the machine's shared server, left where it is."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import logdb
import measure
import paired
import phoenix_env
import routed
from measure import Session
from targets import ROOT, Target

STARTS, COUNT, SECONDS = 2, 8, 4.0
ALONE_COUNT, ALONE_SECONDS = 4, 3.0
"""Each feature alone against everything off (where the cost is): one start each, shorter."""
BOUND = 0.90
"""Issue 15: the production variant's throughput at least 90 % of everything off's."""
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY_LIMITS = ("--rpm", "100000000", "--tpm", "10000000000")
PRODUCTION_LIMITS = """
limits:
  backend: redis
  redis_prefix: "{prefix}"
  per_ip: {{requests_per_minute: 100000000}}
  default_key: {{requests_per_minute: 100000000, tokens_per_minute: 10000000000}}
"""


def _create_key(config: Path, env: dict[str, str]) -> str:
    """A managed key in the variant's database, printed once by `sluice keys create`."""
    command = [str(ROOT / ".venv/bin/sluice"), "keys", "create", "--config", str(config), "--name",
               "bench-production", *KEY_LIMITS]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, **env})
    key = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not key.startswith("sk-"):
        raise logdb.Unavailable(f"`sluice keys create` failed: {(out.stderr or out.stdout).strip()[-300:]}")
    return key


def _drop_prefix(prefix: str) -> int:
    """Delete this run's Redis keys; how many there were."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            client.delete(*names)
        return len(names)
    finally:
        client.close()


@contextlib.contextmanager
def environment(run_dir: Path, phoenix: bool = True) -> Iterator[tuple[dict[str, str], Path, str]]:
    """The production environment, its config file and its managed key; everything removed afterwards (without a
    Phoenix unless `phoenix`: bench/production_inprocess.py)."""
    prefix = f"sluice-bench-{uuid.uuid4().hex[:12]}:"
    config = (run_dir / "sluice-production.yaml").resolve()
    config.write_text(routed.CONFIG.read_text() + PRODUCTION_LIMITS.format(prefix=prefix))
    try:
        with logdb.environment("postgresql") as database, \
                phoenix_env.environment(phoenix, measure.LOAD_CPUS) as traces:
            env = {**database, **traces, "BENCH_REQUEST_LOG": "true", "SLUICE_REDIS_URL": REDIS_URL,
                   "SLUICE_KEY_PEPPER": secrets.token_urlsafe(24), "BENCH_UPSTREAM": "http://127.0.0.1:9"}
            key = _create_key(config, env)
            del env["BENCH_UPSTREAM"]  # the gateway gets the session's upstream
            yield env, config, key
    finally:
        _drop_prefix(prefix)


def measure_production(session: Session, starts: int = STARTS, count: int = COUNT, seconds: float = SECONDS,
                       log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """`starts` pairings of everything off against production, then p99 at 8 connections of each alone."""
    found: list[dict[str, float]] = []
    with environment(session.run_dir) as (env, config, key):
        off = routed.target("Sluice, everything off", "gpt-one")
        on = routed.target("Sluice, production", "gpt-two", env, config, key)
        for start in range(starts):
            log(f"production: everything off against production, start {start + 1} of {starts}, "
                f"{count} × {seconds:g} s")
            counters: dict[str, float] = {}
            runs = paired.pairs(session, off, on, count, seconds, counters, pin=env)
            found.append({**counters, **paired.summary(runs, counters)})
        alone: dict[str, dict[str, float]] = {}
        features = {
            "managed key (database)": routed.target("managed key", "gpt-one", {"SLUICE_DATABASE_URL":
                                                                                env["SLUICE_DATABASE_URL"],
                                                                                "SLUICE_KEY_PEPPER":
                                                                                env["SLUICE_KEY_PEPPER"]}, key=key),
            "rate limits in Redis (static key, same limits)": routed.target(
                "limits in Redis", "gpt-one", {"SLUICE_REDIS_URL": REDIS_URL}, config),
            "request log to PostgreSQL": routed.target("log", "gpt-one", {
                "BENCH_REQUEST_LOG": "true", "SLUICE_DATABASE_URL": env["SLUICE_DATABASE_URL"]}),
            "tracing to Phoenix": routed.target("tracing", "gpt-one", {
                "PHOENIX_COLLECTOR_ENDPOINT": env["PHOENIX_COLLECTOR_ENDPOINT"]}),
            "two deployments": routed.target("two deployments", "gpt-two"),
        }
        for name, feature in features.items():
            log(f"production: {name} alone against everything off, {ALONE_COUNT} × {ALONE_SECONDS:g} s")
            counters = {}
            runs = paired.pairs(session, off, feature, ALONE_COUNT, ALONE_SECONDS, counters, pin=env)
            alone[name] = paired.summary(runs, counters)
        log("production: p99 at 8 connections, each alone, 2 starts")

        def build(production: bool) -> Target:
            return on if production else off
        p99_off, p99_on = paired.moderate_p99(session, build, starts=2, pin=env)
    return {"starts": found, "alone": alone, "p99_8c_off_ms": p99_off, "p99_8c_on_ms": p99_on, "count": count,
            "seconds": seconds}


def met(figures: dict[str, Any]) -> bool:
    return all(s["ratio"] >= BOUND and s["sustained_cpu_ratio"] >= BOUND for s in figures["starts"])


def table(figures: dict[str, Any], command: str) -> list[str]:
    lines = [f"`{command}`: both on the gateway core and loaded at once (32 connections each, {figures['count']} "
             f"runs of {figures['seconds']:g} s per start, medians; ratio lowest–highest of the runs in brackets). "
             "CPU is each whole process tree's; \"with backlog\" also counts what the log writer and the span "
             "exporter (both at SCHED_IDLE) did after the runs until they were idle.", "",
             "| start | req/s off, production | production ÷ off (req/s) | CPU µs/req off, production "
             "| off ÷ production (CPU) | off ÷ production (CPU, with backlog) | of which writer, exporter µs/req "
             "| backlog s | spans dropped | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for index, s in enumerate(figures["starts"]):
        lines.append(f"| {index + 1} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | **{s['ratio']:.3f}** "
                     f"({s['ratio_low']:.3f}–{s['ratio_high']:.3f}) | {s['off_cpu_us']:.0f}, {s['on_cpu_us']:.0f} "
                     f"| {s['cpu_ratio']:.3f} | **{s['sustained_cpu_ratio']:.3f}** "
                     f"| {s.get('role_log_worker_us', 0):.0f}, {s.get('role_span_worker_us', 0):.0f} "
                     f"| {s['drain_s']:.1f} | {s['spans_dropped']:,.0f} of {s['answered']:,.0f} | {s['errors']:.0f} |")
    worst = min(min(s["ratio"], s["sustained_cpu_ratio"]) for s in figures["starts"])
    if figures.get("alone"):
        lines += ["", f"Each feature alone against everything off (the same pairing, {ALONE_COUNT} runs of "
                      f"{ALONE_SECONDS:g} s, one start each: where the cost is):", "",
                  "| feature alone | req/s off, on | on ÷ off (req/s) | CPU µs/req off, on (with backlog) "
                  "| off ÷ on (CPU, with backlog) |", "|---|---:|---:|---:|---:|"]
        for name, s in figures["alone"].items():
            lines.append(f"| {name} | {s['off_rps']:,.0f}, {s['on_rps']:,.0f} | {s['ratio']:.3f} "
                         f"| {s['off_cpu_us']:.0f}, {s['off_cpu_us'] / s['sustained_cpu_ratio']:.0f} "
                         f"| {s['sustained_cpu_ratio']:.3f} |")
    lines += ["", f"p99 at 8 connections, each alone on the gateway core (median of 2 starts × 2 runs of 4 s): "
                  f"off {figures['p99_8c_off_ms']:.2f} ms, production {figures['p99_8c_on_ms']:.2f} ms.", "",
              f"Bound: production ≥ {BOUND:.0%} of everything off, both as req/s and as CPU per request with the "
              f"helpers' backlog, in every start: lowest {worst:.3f}: {'met' if met(figures) else '**missed**'}."]
    return lines
