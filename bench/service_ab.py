"""Two Sluice source trees (A and B, e.g. a commit's `git archive` and the work tree) measured in process in turns:
each tree in a process of its own (bench/service_inprocess.py's app, multiprocess metrics and floor), both on the
first core, the nginx+Lua upstream on the last; slices of `--requests` calls alternate A, B, B, A, ... for each kind,
so noise from a shared machine falls on both alike. Prints each kind's median CPU µs per request for A and B, B ÷ A
and each ÷ its own floor.

    .venv/bin/python bench/service_ab.py A_SRC B_SRC [--turns 8] [--requests 2000] [--only GET,POST,floor-GET]"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import procs
from service_inprocess import KINDS, lifespan, load, scope_of, wait_for
from targets import upstream_launch

BENCH = Path(__file__).resolve().parent


async def worker(upstream: str, names: list[str], concurrency: int) -> None:
    """One side: start the app and the floor, warm up, then run `KIND N` slices read from stdin, answering µs/req."""
    from floor_granian import Floor
    from service_proxy import CONFIG
    from sluice.app import create_app
    from sluice.config import load_config
    from sluice.settings import Settings
    from targets import SLUICE_KEY

    os.environ["BENCH_UPSTREAM"] = upstream
    with tempfile.TemporaryDirectory(prefix="sluice-ab-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(folder) / "metrics")
        (Path(folder) / "metrics").mkdir()
        config_path = Path(folder) / "services.yaml"
        config_path.write_text(CONFIG)
        settings = Settings(api_keys=[SLUICE_KEY], redis_url=None, data_dir=folder, build="bench")
        sluice = create_app(load_config(config_path), settings)
        floor = Floor(upstream)
        stops = [await lifespan(sluice), await lifespan(floor)]
        apps = {name: (floor if name.startswith("floor") else sluice) for name in names}
        scopes = {name: scope_of(*KINDS[name], port=8000, auth=not name.startswith("floor")) for name in names}
        for name in names:
            await load(apps[name], scopes[name], KINDS[name][2], 500, concurrency)
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            name, count = line.split()
            cost = await load(apps[name], scopes[name], KINDS[name][2], int(count), concurrency)
            print(json.dumps(cost), flush=True)
        for stop in stops:
            await stop()


def controller(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the `finally` stops nginx and the sides
    names = args.only.split(",")
    cores = sorted(os.sched_getaffinity(0))
    pin = ["taskset", "-c", str(cores[-1])] if len(cores) > 1 else []
    upstream_port = procs.free_port()
    launch = upstream_launch(upstream_port)
    with tempfile.NamedTemporaryFile(prefix="sluice-ab-nginx-", suffix=".log") as log:
        nginx = subprocess.Popen(pin + launch.cmd, stdout=log, stderr=log)
        sides: dict[str, subprocess.Popen[str]] = {}
        try:
            wait_for(upstream_port)
            for side, src in (("A", args.a), ("B", args.b)):
                env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
                sides[side] = subprocess.Popen(
                    ["taskset", "-c", str(cores[0]), sys.executable, __file__, "--worker",
                     f"http://127.0.0.1:{upstream_port}", args.only, str(args.concurrency)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=BENCH)
            for proc in sides.values():
                assert proc.stdout is not None
                while (line := proc.stdout.readline()).strip() != "ready":
                    if not line:
                        raise RuntimeError("a side exited before it was ready")
            found: dict[tuple[str, str], list[float]] = {(side, name): [] for side in sides for name in names}
            for turn in range(args.turns):
                order = ("A", "B") if turn % 2 == 0 else ("B", "A")
                for name in names:
                    for side in order:
                        proc = sides[side]
                        assert proc.stdin is not None and proc.stdout is not None
                        proc.stdin.write(f"{name} {args.requests}\n")
                        proc.stdin.flush()
                        answer = proc.stdout.readline()
                        if not answer:
                            raise RuntimeError(f"side {side} exited")
                        found[side, name].append(json.loads(answer))
            report(found, names)
        finally:
            for proc in sides.values():
                if proc.poll() is None and proc.stdin is not None:
                    proc.stdin.write("\n")
                    proc.stdin.close()
                    proc.wait(timeout=30)
            nginx.terminate()
            nginx.wait()


def report(found: dict[tuple[str, str], list[float]], names: list[str]) -> None:
    median: dict[tuple[str, str], float] = {key: statistics.median(values) for key, values in found.items()}
    for name in names:
        a, b = median["A", name], median["B", name]
        pairs = [vb / va for va, vb in zip(found["A", name], found["B", name], strict=True)]
        line = (f"{name:12s} A {a:7.1f}  B {b:7.1f} µs/req  B÷A {b / a:.3f} "
                f"(per turn median {statistics.median(pairs):.3f})")
        floor = "floor-" + name if "floor-" + name in names else None
        if floor is not None:
            line += f"  ÷floor A {a / median['A', floor]:.3f} B {b / median['B', floor]:.3f}"
        print(line)


def run() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(worker(sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="GET,POST,floor-GET,floor-POST")
    args: Any = parser.parse_args()
    controller(args)


if __name__ == "__main__":
    run()
