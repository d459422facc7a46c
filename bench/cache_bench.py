"""The response cache's cost and gain, in one run: a hit's added p99 at one connection against the upstream itself,
and hits against misses in requests per second (issue 15: added p99 <= 0.5 ms; hits >= 2x the req/s of misses).

    .venv/bin/python bench/cache_bench.py [--rounds 3] [--seconds 5] [--connections 32] [--redis URL]

One Sluice worker on core 0 (request log off, cache in memory); the benchmark upstream (bench/upstream/, nginx) and
wrk on core 1. A hit repeats one request the cache holds; a miss sends a request no one sent before (wrk/unique.lua
numbers them), so it is looked up, sent upstream and stored. For scale, the same run measures the server floor:
granian (one worker, core 0) with a raw ASGI app that answers every request with fixed bytes (`fixed_app` below),
the least any Python gateway on granian can add. Rounds alternate between the kinds; medians reported. With
`--redis URL` the cache is in that Redis (under a key prefix of its own, deleted afterwards) instead of in memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import procs
from loadgen import Call, WrkResult, median
from measure import GATEWAY_CPUS, LOAD_CPUS, Session
from targets import ROOT, SLUICE_KEY, probe

BENCH = Path(__file__).resolve().parent
RUN_DIR = BENCH / ".run" / "cache"
CONFIG = """
providers:
  up: {type: openai, base_url: "${BENCH_UPSTREAM}/v1", api_key: bench}
models:
  - {name: gpt-cached, provider: up, model: gpt-bench, cache: {ttl_seconds: 3600}}
request_log: {enabled: false}
limits: {redis_prefix: "PREFIX"}
"""
AUTH = (("Authorization", f"Bearer {SLUICE_KEY}"),)
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


def body(text: str) -> bytes:
    return json.dumps({"model": "gpt-cached", "messages": [{"role": "user", "content": text}]}).encode()


def wrk(call: Call, connections: int, seconds: float, script: str = "request.lua") -> WrkResult:
    """`loadgen.run_wrk` with a script of this directory's wrk/ (unique.lua for misses)."""
    env = {**os.environ, "BENCH_METHOD": call.method, "BENCH_BODY": call.body.decode(), "BENCH_WRK_DIR":
           str(BENCH / "wrk"), "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in call.headers)}
    cmd = ["taskset", "-c", LOAD_CPUS, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout=5s", "-s", str(BENCH / "wrk" / script), f"http://127.0.0.1:{call.port}{call.path}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 40, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stderr.strip() or out.stdout.strip()}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors:
        raise RuntimeError(f"{errors} errors in a {script} run against port {call.port}")
    return WrkResult(connections, raw["requests"], raw["duration_us"] / 1e6, errors, raw["p50_us"] / 1000,
                     raw["p90_us"] / 1000, raw["p99_us"] / 1000, raw["max_us"] / 1000)


def x_cache(port: int, call_body: bytes) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", call_body, {"Content-Type": "application/json",
                                                                 "Authorization": f"Bearer {SLUICE_KEY}"})
        reply = conn.getresponse()
        reply.read()
        return reply.getheader("x-cache") or "-"
    finally:
        conn.close()


def cache_counts(port: int) -> dict[str, float]:
    """`sluice_cache_requests_total` by result: proof that the hits were hits and the misses misses."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {SLUICE_KEY}"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {sample.labels["result"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "sluice_cache_requests_total"}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32, help="for the req/s comparison")
    parser.add_argument("--redis", default="", help="keep the cache in this Redis (redis://…) rather than in memory")
    args = parser.parse_args(argv)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    config = RUN_DIR / "sluice-cache-bench.yaml"
    prefix = f"sluice-cache-bench-{os.urandom(4).hex()}:"
    config.write_text(CONFIG.replace("PREFIX", prefix))
    session = Session(RUN_DIR)
    port, floor_port = procs.free_port(), procs.free_port()
    cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
           str(port), "--workers", "1"]
    env = {"SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": session.upstream_url, "SLUICE_REDIS_URL": args.redis}
    sluice = procs.start("sluice", cmd, cpus=GATEWAY_CPUS, log_dir=RUN_DIR, env=env, cwd=ROOT)
    floor = procs.start("floor", [str(ROOT / ".venv/bin/granian"), "--interface", "asgi", "--loop", "uvloop",
                                  "--host", "127.0.0.1", "--port", str(floor_port), "--workers", "1", "--no-ws",
                                  "--log-level", "warning", "cache_bench:fixed_app"],
                        cpus=GATEWAY_CPUS, log_dir=RUN_DIR, cwd=BENCH)
    try:
        hit = Call(port, "/v1/chat/completions", body("Hello there, how are you?"), AUTH)
        miss = Call(port, "/v1/chat/completions", body("Hello there {n}, how are you?"), AUTH)
        direct = Call(session.upstream_port, "/v1/chat/completions", body("Hello there, how are you?"))
        fixed = Call(floor_port, "/v1/chat/completions", body("Hello there, how are you?"))
        procs.wait_ready(sluice, port, probe(hit), 30)
        procs.wait_ready(floor, floor_port, probe(fixed), 30)
        verdicts = (x_cache(port, hit.body), x_cache(port, body(f"warm-up {time.time()}")))
        if verdicts != ("HIT", "MISS"):
            raise RuntimeError(f"X-Cache of a repeated and a new request: {verdicts}, not (HIT, MISS)")
        for call, script in ((hit, "request.lua"), (miss, "unique.lua"), (fixed, "request.lua")):
            wrk(call, 8, 2, script)
        one: dict[str, list[WrkResult]] = {"direct": [], "floor": [], "hit": [], "miss": []}
        rps: dict[str, list[float]] = {"hit": [], "miss": []}
        for _ in range(args.rounds):
            one["direct"].append(wrk(direct, 1, args.seconds))
            one["floor"].append(wrk(fixed, 1, args.seconds))
            one["hit"].append(wrk(hit, 1, args.seconds))
            one["miss"].append(wrk(miss, 1, args.seconds, "unique.lua"))
            rps["hit"].append(wrk(hit, args.connections, args.seconds).rps)
            rps["miss"].append(wrk(miss, args.connections, args.seconds, "unique.lua").rps)
        counts = cache_counts(port)
    finally:
        sluice.stop()
        floor.stop()
        session.close()
        if args.redis:
            forget(args.redis, prefix)
    p50 = {kind: median([result.p50_ms for result in results]) for kind, results in one.items()}
    p99 = {kind: median([result.p99_ms for result in results]) for kind, results in one.items()}
    figures: dict[str, Any] = {
        "p50_ms": p50, "p99_ms": p99, "rps": {kind: median(values) for kind, values in rps.items()},
        "raw": {"p99_ms": {kind: [result.p99_ms for result in results] for kind, results in one.items()},
                "rps": rps},
        "store": "redis" if args.redis else "memory", "counts": counts, "rounds": args.rounds,
        "seconds": args.seconds, "connections": args.connections}
    added, floor_added = p99["hit"] - p99["direct"], p99["floor"] - p99["direct"]
    ratio = figures["rps"]["hit"] / figures["rps"]["miss"]
    figures.update(hit_added_p99_ms=added, floor_added_p99_ms=floor_added, hit_miss_rps_ratio=ratio)
    (RUN_DIR / "cache.json").write_text(json.dumps(figures, indent=2))
    print(f"cache in {figures['store']}; 1 connection, p50 / p99 ms (medians of {args.rounds} x {args.seconds:.0f} s):")
    for kind, label in (("direct", "upstream directly"), ("floor", "granian, fixed reply (server floor)"),
                        ("hit", "Sluice, cache hit"), ("miss", "Sluice, cache miss")):
        print(f"  {label:38} {p50[kind]:.3f} / {p99[kind]:.3f}  (added {p50[kind] - p50['direct']:+.3f} / "
              f"{p99[kind] - p99['direct']:+.3f})")
    print(f"hit: added p99 {added:+.3f} ms (bound 0.5; the server floor alone adds {floor_added:+.3f})")
    print(f"req/s at {args.connections} connections: hits {figures['rps']['hit']:,.0f}, misses "
          f"{figures['rps']['miss']:,.0f} ({ratio:.2f}x, bound 2x)")
    print(f"X-Cache verdicts counted by Sluice: {counts}")
    met = added <= 0.5 and ratio >= 2
    print("bounds met" if met else "bounds NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
