"""CPU per chat request of the production variant's gateway process (bench/production.py) against everything off,
called in process (ASGI, N concurrent calls, as bench/service_inprocess.py does) against the nginx+Lua upstream:
where the production variant's µs go, without the writer and exporter processes (their own figures are
bench/recorder_cost.py's). Variants in turn, order reversed every other round, medians; compare within one run.

    .venv/bin/python bench/production_inprocess.py [--rounds 5] [--requests 4000] [--only off,key,redis,production]
    [--profile VARIANT] (cProfile of one variant, sorted by own time)

Variants: `off` (static key, gpt-one, no limits), `key` (the managed key, its limits in memory), `redis` (static
key, the production limits in Redis), `production` (managed key, production limits in Redis, gpt-two; the request
log and tracing off: their cost is in other processes). Needs PostgreSQL (a fresh database, bench/logdb.py) and
Redis (BENCH_REDIS_URL)."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import procs
import production
import routed
from service_inprocess import lifespan, load, one, scope_of, wait_for
from targets import SLUICE_KEY, chat_body, upstream_launch

VARIANTS = ("off", "key", "redis", "production")


async def main(args: argparse.Namespace, env: dict[str, str], config: Path, key: str, upstream: str) -> None:
    os.environ["BENCH_UPSTREAM"] = upstream
    os.environ.pop("BENCH_REQUEST_LOG", None)
    from sluice.app import create_app
    from sluice.config import load_config
    from sluice.settings import Settings

    with tempfile.TemporaryDirectory(prefix="sluice-prod-inprocess-") as folder:
        def settings(**extra: Any) -> Settings:
            found = {"api_keys": [SLUICE_KEY], "redis_url": None, "data_dir": folder, "build": "bench", **extra}
            return Settings(**found)
        managed = {"database_url": env["SLUICE_DATABASE_URL"], "key_pepper": env["SLUICE_KEY_PEPPER"]}
        builds = {
            "off": (routed.CONFIG, settings(), SLUICE_KEY, "gpt-one"),
            "key": (routed.CONFIG, settings(**managed), key, "gpt-one"),
            "redis": (config, settings(redis_url=production.REDIS_URL), SLUICE_KEY, "gpt-one"),
            "production": (config, settings(redis_url=production.REDIS_URL, **managed), key, "gpt-two"),
        }
        names = [name for name in VARIANTS if not args.only or name in args.only.split(",")]
        apps, scopes, bodies, stops = {}, {}, {}, []
        for name in names:
            path, found_settings, bearer, model = builds[name]
            apps[name] = create_app(load_config(path), found_settings)
            stops.append(await lifespan(apps[name]))
            bodies[name] = chat_body(model)
            scope = scope_of("POST", "/v1/chat/completions", bodies[name], 8000, auth=False)
            scope["headers"].append((b"authorization", f"Bearer {bearer}".encode()))
            scopes[name] = scope
        from sluice.app import tune_garbage_collector

        tune_garbage_collector()  # as `sluice serve` does once started
        for name in names:  # warm-up, once the key store is open (it may take seconds on a busy machine)
            for _ in range(60):
                if await one(apps[name], dict(scopes[name]), bodies[name]) == 200:
                    break
                await asyncio.sleep(0.5)
            await load(apps[name], scopes[name], bodies[name], 1000, args.concurrency)
        if args.parts:
            await parts(apps["production"], scopes["production"], bodies["production"], key, args.requests)
        elif args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await load(apps[args.profile], scopes[args.profile], bodies[args.profile], args.requests,
                       args.concurrency)
            profiler.disable()
            stats = pstats.Stats(profiler)
            if os.environ.get("PROFILE_DUMP"):
                stats.dump_stats(os.environ["PROFILE_DUMP"])
            stats.sort_stats("tottime").print_stats(50)
            stats.sort_stats("cumulative").print_stats(60)
        else:
            found: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    found[name].append(await load(apps[name], scopes[name], bodies[name], args.requests,
                                                  args.concurrency))
            base = statistics.median(found[names[0]])
            for name in names:
                value = statistics.median(found[name])
                print(f"{name:12s} {value:7.1f} µs/req  {names[0]} ÷ this {base / value:.3f}  (runs: "
                      f"{', '.join(f'{v:.0f}' for v in found[name])})")
        for stop in stops:
            await stop()


async def parts(app: Any, scope: dict[str, Any], body: bytes, key: str, count: int) -> None:
    """µs per call of each step the production variant adds, on the started app (after the warm-up)."""
    import orjson

    from sluice.exchange import Exchange

    gateway = app.gateway
    admission, keys = gateway.admission, gateway.keys
    parsed = orjson.loads(body)
    reply = (b'{"id":"x","object":"chat.completion","model":"gpt-two","choices":[{"index":0,"message":{"role":'
             b'"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
             b'"completion_tokens":12,"total_tokens":24}}')

    def exchange() -> Exchange:
        return Exchange(request_id="r", endpoint="/v1/chat/completions", method="POST", started_at=0.0,
                        operation="chat", model="gpt-two", status=200, response_body=reply, provider="up")

    principal = await keys.authenticate(key)
    static = await keys.authenticate(SLUICE_KEY)
    exchanges = [exchange() for _ in range(count)]
    for made in exchanges:
        made.principal = principal
    grants: list[Any] = []

    async def managed_key() -> None:
        await keys.authenticate(key)

    async def static_key() -> None:
        await keys.authenticate(SLUICE_KEY)

    async def address() -> None:
        grants.append(admission.admit_ip_now(scope))

    def admit(index: int) -> None:
        admission.admit_now(principal, grants[index], model="gpt-two", body=parsed, size=len(body),
                            exchange=exchanges[index])

    def headers(index: int) -> None:
        grants[index].headers()

    def release(index: int) -> None:
        grants[index].release()

    def tokens(index: int) -> None:
        admission.tokens.observe(exchanges[index])

    found: dict[str, float] = {}
    for name, step in (("authenticate (managed)", managed_key), ("authenticate (static)", static_key),
                       ("admit_ip_now", address)):
        started = time.perf_counter()
        for _ in range(count):
            await step()
        found[name] = (time.perf_counter() - started) / count * 1e6
    for name, call in (("admit_now (key, model)", admit), ("grant.headers", headers), ("grant.release", release),
                       ("tokens.observe", tokens)):
        started = time.perf_counter()
        for index in range(count):
            call(index)
        found[name] = (time.perf_counter() - started) / count * 1e6
    for name, value in found.items():
        print(f"{name:24s} {value:6.2f} µs")
    if os.environ.get("PARTS_PROFILE"):
        grants.clear()
        for _ in range(count):
            await address()
        profiler = cProfile.Profile()
        profiler.enable()
        for index in range(count):
            admit(index)
            headers(index)
            tokens(index)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    del static


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="")
    parser.add_argument("--parts", action="store_true", help="µs per call of each step production adds")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    upstream_port = procs.free_port()
    launch = upstream_launch(upstream_port)
    cores = sorted(os.sched_getaffinity(0))
    pin = ["taskset", "-c", str(cores[-1])] if len(cores) > 1 else []
    with tempfile.TemporaryDirectory(prefix="sluice-prod-inprocess-run-") as run_dir, \
            production.environment(Path(run_dir), phoenix=False) as (env, config, key), \
            tempfile.NamedTemporaryFile(prefix="sluice-inprocess-nginx-", suffix=".log") as log:
        if pin:
            os.sched_setaffinity(0, {cores[0]})
        nginx = subprocess.Popen(pin + launch.cmd, stdout=log, stderr=log)
        try:
            wait_for(upstream_port)
            asyncio.run(main(args, env, config, key, f"http://127.0.0.1:{upstream_port}"))
        finally:
            nginx.terminate()
            nginx.wait()


if __name__ == "__main__":
    run()
