"""The response cache's cost and gain, in one run: a hit's added p99 at one connection against the upstream itself,
and hits against misses in requests per second (issue 15: added p99 <= 0.5 ms; hits >= 2x the req/s of misses).

    .venv/bin/python bench/run.py --cache [--write docs/benchmarks.md]
    .venv/bin/python bench/cache_bench.py [--rounds 3] [--seconds 5] [--connections 32] [--redis URL]

One Sluice worker on core 0 (request log off, cache in memory) beside a copy of the upstream on core 0 ("upstream
directly", as everywhere in the bench); the shared upstream and wrk on core 1. A hit repeats one request the cache
holds; a miss sends a request no one sent before (wrk/unique.lua numbers them), so it is looked up, sent upstream
and stored; "not cached" is the same request to a model without `cache:` in the same process (what a hit saves).
For scale, the same run measures the server floor: granian (one worker, core 0) with a raw ASGI app that answers
every request with fixed bytes (`fixed_app` below), the least any Python gateway on granian can add. Rounds
alternate between the kinds; medians reported. With `--redis URL` the cache is in that Redis (under a key prefix
of its own, deleted afterwards) instead of in memory."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import catalog
import install
import measure
import procs
import routed
from loadgen import Call, WrkResult, median, run_wrk
from measure import Session
from targets import ROOT, SLUICE_KEY, Target, probe

BENCH = Path(__file__).resolve().parent
RUN_DIR = BENCH / ".run" / "cache"
CONFIG = """
providers:
  up: {type: openai, base_url: "${BENCH_UPSTREAM}/v1", api_key: bench}
models:
  - {name: gpt-cached, provider: up, model: gpt-cached, cache: {ttl_seconds: 3600}}
  - {name: gpt-one, provider: up, model: gpt-one}
request_log: {enabled: false}
limits: {redis_prefix: "PREFIX"}
"""
FIXED_REPLY = (b'{"id":"chatcmpl-fixed","object":"chat.completion","created":1,"model":"gpt-bench",'
               b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}')


async def fixed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The server floor: read the request, answer fixed bytes (what a cache hit is, minus everything Sluice does)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(FIXED_REPLY)).encode())]})
    await send({"type": "http.response.body", "body": FIXED_REPLY})

ADDED_P99_BOUND_MS, RPS_BOUND = 0.5, 2.0
ROUNDS, SECONDS, CONNECTIONS = 3, 5.0, 32


def body(model: str, text: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()


def wrk(call: Call, connections: int, seconds: float, script: str = "request.lua") -> WrkResult:
    """`loadgen.run_wrk` (wrk on the load core), refusing a run with errors (a miss must be a miss, not a failure)."""
    result = run_wrk(call, connections, seconds, script=script)
    if result.errors:
        raise RuntimeError(f"{result.errors} errors in a {script} run against port {call.port}")
    return result


def x_cache(port: int, call_body: bytes) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", call_body, {"Content-Type": "application/json",
                                                                 "Authorization": f"Bearer {SLUICE_KEY}"})
        reply = conn.getresponse()
        reply.read()
        return reply.getheader("x-cache") or "-"
    finally:
        conn.close()


def forget(url: str, prefix: str) -> None:
    """Delete the run's entries from Redis."""
    import redis

    client = redis.Redis.from_url(url)
    scan = client.scan_iter(match=prefix + "*", count=1000)
    try:
        for keys in iter(lambda: list(itertools.islice(scan, 1000)), []):
            client.delete(*keys)
    finally:
        client.close()


def measure_cache(session: Session, rounds: int = ROUNDS, seconds: float = SECONDS, connections: int = CONNECTIONS,
                  redis: str = "", log: Callable[[str], None] = measure.log) -> dict[str, Any]:
    """p50/p99 at one connection of the upstream directly, the server floor, hits, misses and uncached requests;
    req/s of hits and misses at `connections`; Sluice's own count of each verdict."""
    log(f"cache: {rounds} rounds of {seconds:g} s runs (1 connection: direct, floor, hit, miss, not cached; "
        f"{connections} connections: hit, miss)")
    config = (session.run_dir / "sluice-cache-bench.yaml").resolve()
    prefix = f"sluice-cache-bench-{os.urandom(4).hex()}:"
    config.write_text(CONFIG.replace("PREFIX", prefix))
    sluice = routed.target(f"Sluice, response cache in {'Redis' if redis else 'memory'}", "gpt-cached",
                           {"SLUICE_REDIS_URL": redis}, config=config)
    direct = catalog.build(lambda: session.upstream_url)["direct"]
    floor_port = procs.free_port()
    floor = procs.start("floor", [str(ROOT / ".venv/bin/granian"), "--interface", "asgi", "--loop", "uvloop",
                                  "--host", "127.0.0.1", "--port", str(floor_port), "--workers", "1", "--no-ws",
                                  "--log-level", "warning", "cache_bench:fixed_app"],
                        cpus=measure.GATEWAY_CPUS, log_dir=session.run_dir, cwd=BENCH)
    try:
        figures = _measure(session, direct, sluice, floor, floor_port, rounds, seconds, connections)
    finally:
        floor.stop()
        if redis:
            forget(redis, prefix)
    return {**figures, "store": "redis" if redis else "memory"}


def _measure(session: Session, direct: Target, sluice: Target, floor: procs.Proc, floor_port: int, rounds: int,
             seconds: float, connections: int) -> dict[str, Any]:
    with session.started(direct) as (_, direct_port), session.started(sluice) as (_, port):
        hit = Call(port, "/v1/chat/completions", body("gpt-cached", "Hello there, how are you?"),
                   (("Authorization", f"Bearer {SLUICE_KEY}"),))
        miss = Call(port, hit.path, body("gpt-cached", "Hello there {n}, how are you?"), hit.headers)
        uncached = Call(port, hit.path, body("gpt-one", "Hello there, how are you?"), hit.headers)
        upstream = Call(direct_port, hit.path, body("gpt-one", "Hello there, how are you?"))
        fixed = Call(floor_port, hit.path, upstream.body)
        procs.wait_ready(floor, floor_port, probe(fixed), 30)
        verdicts = (x_cache(port, hit.body), x_cache(port, body("gpt-cached", f"warm-up {time.time()}")))
        if verdicts != ("HIT", "MISS"):  # the readiness probe asked `hit`'s question: it is held
            raise RuntimeError(f"X-Cache of a request, its repeat and a new one: {verdicts}")
        for call, script in ((hit, "request.lua"), (miss, "unique.lua"), (uncached, "request.lua"),
                             (upstream, "request.lua"), (fixed, "request.lua")):
            wrk(call, 8, 2, script)
        single: dict[str, list[WrkResult]] = {"direct": [], "floor": [], "hit": [], "miss": [], "uncached": []}
        loaded: dict[str, list[WrkResult]] = {"hit": [], "miss": []}
        for _ in range(rounds):
            single["direct"].append(wrk(upstream, 1, seconds))
            single["floor"].append(wrk(fixed, 1, seconds))
            single["hit"].append(wrk(hit, 1, seconds))
            single["miss"].append(wrk(miss, 1, seconds, "unique.lua"))
            single["uncached"].append(wrk(uncached, 1, seconds))
            loaded["hit"].append(wrk(hit, connections, seconds))
            loaded["miss"].append(wrk(miss, connections, seconds, "unique.lua"))
        counts = {k.split("result=")[1].rstrip("}"): v for k, v in
                  routed.counters(port, ("sluice_cache_requests_total",)).items() if "result=" in k}
    p50 = {kind: median([r.p50_ms for r in found]) for kind, found in single.items()}
    p99 = {kind: median([r.p99_ms for r in found]) for kind, found in single.items()}
    rps = {kind: median([r.rps for r in found]) for kind, found in loaded.items()}
    return {"p50_ms": p50, "p99_ms": p99, "rps": rps, "counts": counts, "rounds": rounds, "seconds": seconds,
            "connections": connections,
            "raw": {"p99_ms": {k: [r.p99_ms for r in v] for k, v in single.items()},
                    "rps": {k: [r.rps for r in v] for k, v in loaded.items()}},
            "hit_added_p50_ms": p50["hit"] - p50["direct"], "hit_added_p99_ms": p99["hit"] - p99["direct"],
            "floor_added_p99_ms": p99["floor"] - p99["direct"],
            "hit_miss_rps_ratio": rps["hit"] / rps["miss"] if rps["miss"] else 0.0}


def met(figures: dict[str, Any]) -> bool:
    return bool(figures["hit_added_p99_ms"] <= ADDED_P99_BOUND_MS and figures["hit_miss_rps_ratio"] >= RPS_BOUND)


def table(figures: dict[str, Any], command: str) -> list[str]:
    p50, p99, rps, raw = figures["p50_ms"], figures["p99_ms"], figures["rps"], figures["raw"]
    labels = {"direct": "upstream directly", "floor": "granian, fixed reply (server floor)", "hit": "Sluice, cache hit",
              "miss": "Sluice, cache miss (new request)", "uncached": "Sluice, model without a cache"}
    lines = [f"`{command}`: cache in {figures.get('store', 'memory')}; {figures['rounds']} rounds, each kind in "
             f"turn, runs of {figures['seconds']:g} s; medians, lowest–highest of the rounds in brackets.", "",
             f"| request | p50 ms (1 conn) | p99 ms (1 conn) | added p50 / p99 ms | req/s at {figures['connections']} "
             "conn |", "|---|---:|---:|---:|---:|"]
    for kind, label in labels.items():
        if kind not in p50:
            continue
        added = "—" if kind == "direct" else f"{p50[kind] - p50['direct']:+.3f} / {p99[kind] - p99['direct']:+.3f}"
        loaded = routed.spread(raw["rps"][kind], "{:,.0f}".format) if kind in rps else "—"
        lines.append(f"| {label} | {p50[kind]:.3f} | {routed.spread(raw['p99_ms'][kind], '{:.3f}'.format)} "
                     f"| {added} | {loaded} |")
    counts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(figures["counts"].items()))
    p99_ok = figures["hit_added_p99_ms"] <= ADDED_P99_BOUND_MS
    rps_ok = figures["hit_miss_rps_ratio"] >= RPS_BOUND
    lines += ["", f"Sluice's own count of the verdicts (`sluice_cache_requests_total`): {counts}.", "",
              f"Bounds: a hit's added p99 at one connection ≤ {ADDED_P99_BOUND_MS} ms: "
              f"{figures['hit_added_p99_ms']:+.3f} ms (the server floor alone: "
              f"{figures.get('floor_added_p99_ms', float('nan')):+.3f}), {'met' if p99_ok else '**missed**'}; "
              f"hits ≥ {RPS_BOUND:g}× "
              f"the req/s of misses: {figures['hit_miss_rps_ratio']:.2f}×, {'met' if rps_ok else '**missed**'}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="for the req/s comparison")
    parser.add_argument("--redis", default="", help="keep the cache in this Redis (redis://…) rather than in memory")
    args = parser.parse_args(argv)
    install.system_tools()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    session = Session(RUN_DIR)
    try:
        figures = measure_cache(session, args.rounds, args.seconds, args.connections, args.redis)
    finally:
        session.close()
    (RUN_DIR / "cache.json").write_text(json.dumps(figures, indent=2))
    print("\n".join(table(figures, " ".join([".venv/bin/python", "bench/cache_bench.py", *sys.argv[1:]]))))
    return 0 if met(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
