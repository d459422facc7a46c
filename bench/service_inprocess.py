"""CPU per request of a service GET, a service POST (2 kB), the chat route, passthrough and the floor app, each
called in process (ASGI scope/receive/send, N concurrent calls) against the nginx+Lua benchmark upstream; this
process on the first core, nginx on the last; kinds in turn, order reversed every other round, medians. Metrics are
multiprocess (mmap files) as under `sluice serve`. Noise moves every kind together between runs: compare kinds
within one run (a service request ÷ chat, ÷ the floor).

    .venv/bin/python bench/service_inprocess.py [--rounds 5] [--requests 4000] [--concurrency 32] [--only GET,chat]
    [--profile KIND] (cProfile of one kind, printed sorted by own time)"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import procs
from service_proxy import CONFIG, post_body
from targets import SLUICE_KEY, chat_body, upstream_launch

RELAYED = [0]
"""Body messages sent with more to follow: a reply relayed in pieces rather than whole."""
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
AUTH = (b"authorization", f"Bearer {SLUICE_KEY}".encode())
KINDS: dict[str, tuple[str, str, bytes]] = {
    "GET": ("GET", "/svc/v1/items/42", b""),
    "POST": ("POST", "/svc/v1/chat/completions", post_body()),
    "chat": ("POST", "/v1/chat/completions", chat_body("gpt-bench")),
    "passthrough": ("POST", "/provider/up/v1/chat/completions", chat_body("gpt-bench")),
    "floor-GET": ("GET", "/v1/items/42", b""),
    "floor-POST": ("POST", "/v1/chat/completions", post_body()),
}


def scope_of(method: str, path: str, body: bytes, port: int, auth: bool) -> dict[str, Any]:
    """A scope as granian gives it, with the headers wrk sends."""
    headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/json")]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    if auth:
        headers.append(AUTH)
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "server": ("127.0.0.1", port), "client": ("127.0.0.1", 40000), "scheme": "http", "method": method,
            "root_path": "", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": headers}


async def one(app: App, scope: dict[str, Any], body: bytes) -> int:
    """One call: the body in one message, then (like granian) a future that resolves at the response's end."""
    loop = asyncio.get_running_loop()
    sent = 0
    status = 0
    ended = loop.create_future()
    done = False

    def receive() -> asyncio.Future[dict[str, Any]]:
        nonlocal sent
        sent += 1
        if sent == 1:
            first = loop.create_future()
            first.set_result({"type": "http.request", "body": body, "more_body": False})
            return first
        return ended

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, done
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message.get("more_body", False):
            RELAYED[0] += 1
        else:
            done = True

    await app(dict(scope), receive, send)
    if not ended.done():
        ended.set_result({"type": "http.disconnect"})
    assert done, "response not completed"
    return status


async def load(app: App, scope: dict[str, Any], body: bytes, requests: int, concurrency: int) -> float:
    """CPU µs per request (this process, its threads included) over `requests` calls, `concurrency` at once."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await one(app, scope, body)
            if status != 200:
                raise RuntimeError(f"{scope['method']} {scope['path']} answered {status}")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1e6


async def lifespan(app: App) -> Callable[[], Awaitable[None]]:
    """Start `app` (its lifespan's startup), returning what shuts it down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task
    return stop


async def main(args: argparse.Namespace, upstream: str, port: int) -> None:
    """Sluice (the benchmark's services config) and the floor app started, warmed up, then measured or profiled."""
    os.environ["BENCH_UPSTREAM"] = upstream
    from floor_granian import Floor
    from sluice.app import create_app
    from sluice.config import load_config
    from sluice.settings import Settings

    with tempfile.TemporaryDirectory(prefix="sluice-inprocess-") as folder:
        config_path = Path(folder) / "services.yaml"
        config_path.write_text(CONFIG)
        # multiprocess metrics (mmap files), as `sluice serve` always has them (cli.py), whatever the workers
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(folder) / "metrics")
        (Path(folder) / "metrics").mkdir()
        settings = Settings(api_keys=[SLUICE_KEY], redis_url=None, data_dir=folder, build="bench")
        sluice = create_app(load_config(config_path), settings)
        floor = Floor(upstream)
        stops = [await lifespan(sluice), await lifespan(floor)]
        names = [name for name in KINDS if not args.only or name in args.only.split(",")]
        apps = {name: (floor if name.startswith("floor") else sluice) for name in names}
        scopes = {name: scope_of(*KINDS[name], port=port, auth=not name.startswith("floor")) for name in names}
        for name in names:  # warm-up: connections opened, code paths imported
            await load(apps[name], scopes[name], KINDS[name][2], 500, args.concurrency)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await load(apps[args.profile], scopes[args.profile], KINDS[args.profile][2], args.requests,
                       args.concurrency)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(int(os.environ.get("PROFILE_LINES", "45")))
        else:
            found: dict[str, list[float]] = {name: [] for name in names}
            relayed: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    RELAYED[0] = 0
                    found[name].append(await load(apps[name], scopes[name], KINDS[name][2], args.requests,
                                                  args.concurrency))
                    relayed[name].append(RELAYED[0] / args.requests)
            for name in names:
                values = found[name]
                print(f"{name:12s} {statistics.median(values):7.1f} µs/req  (runs: "
                      f"{', '.join(f'{v:.0f}' for v in values)}; pieces a request "
                      f"{statistics.mean(relayed[name]):.2f})")
        for stop in stops:
            await stop()


def run() -> None:
    """Parse the arguments, pin, start the upstream, run `main`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="")
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
    if pin:  # the gateway on one core, the upstream on another, as bench/paired.py does
        os.sched_setaffinity(0, {cores[0]})
    with tempfile.NamedTemporaryFile(prefix="sluice-inprocess-nginx-", suffix=".log") as log:
        nginx = subprocess.Popen(pin + launch.cmd, stdout=log, stderr=log)
        try:
            wait_for(upstream_port)
            asyncio.run(main(args, f"http://127.0.0.1:{upstream_port}", 8000))
        finally:
            nginx.terminate()
            nginx.wait()


def wait_for(port: int) -> None:
    """Until something accepts connections on `port` (5 s at most)."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


if __name__ == "__main__":
    run()
