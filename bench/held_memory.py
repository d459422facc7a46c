"""Memory per held request, part by part: the HTTP server alone and the upstream client alone.

`.venv/bin/python bench/held_memory.py [--held 2000]` measures, on the bench's cores:
- each server (granian as Sluice runs it, uvicorn with uvloop + httptools) serving a raw ASGI app that answers
  after 1.5 s, with `--held` wrk connections open: the tree's RSS growth per connection;
- each client (pyreqwest as Sluice builds it, aiohttp, a bare asyncio connection) holding `--held` requests to the
  bench upstream's 1.5 s path from one process: its RSS growth per request, and how much of it Python objects are
  (`tracemalloc`, in a second run: tracing makes the process bigger).
Findings: docs/benchmarks.md, "Memory per held request".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import procs
from loadgen import Call, run_wrk
from measure import GATEWAY_CPUS, Session

BENCH = Path(__file__).parent
ROOT = BENCH.parent
BODY = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "Hello there, how are you?"}]},
                  separators=(",", ":")).encode()
HEADERS = {"Content-Type": "application/json"}
# What `sluice serve` puts in the environment (src/sluice/serve/allocators.py), so the Rust parts allocate as in Sluice.
ALLOCATORS = {"MIMALLOC_ALLOW_THP": "0", "MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "50",
              "_RJEM_MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:0"}


async def held_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app that answers every request after 1.5 s, as the bench upstream's slow path does."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    await asyncio.sleep(1.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def server_command(server: str, port: int) -> list[str]:
    venv = ROOT / ".venv/bin"
    if server == "granian":  # the options src/sluice/serve/granian_entry.py gives it
        return [str(venv / "granian"), "--interface", "asgi", "--loop", "uvloop", "--port", str(port), "--backlog",
                "4096", "--backpressure", "4096", "--no-ws", "--log-level", "warning", "held_memory:held_app"]
    return [str(venv / "uvicorn"), "--loop", "uvloop", "--http", "httptools", "--port", str(port), "--backlog",
            "4096", "--no-access-log", "--log-level", "warning", "held_memory:held_app"]


def measure_server(session: Session, server: str, held: int) -> str:
    port = procs.free_port()
    proc = procs.start(f"held-{server}", server_command(server, port), cpus=GATEWAY_CPUS, log_dir=session.run_dir,
                       env=ALLOCATORS, cwd=BENCH)
    try:
        call = Call(port, "/", BODY)
        procs.wait_ready(proc, port, lambda conn: (conn.request("GET", "/"), conn.getresponse().status)[1], 15)
        run_wrk(call, 8, 2, timeout_s=5)
        idle = proc.rss_mb()
        with procs.RssSampler(proc) as sampler:
            run = run_wrk(call, held, 6, timeout_s=15)
        return (f"server {server:9} idle {idle:5.0f} MB, peak {sampler.peak:5.0f} MB: "
                f"{(sampler.peak - idle) * 1024 / held:5.1f} kB per held connection ({run.requests:,} answered, "
                f"{run.errors} errors)")
    finally:
        proc.stop()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


async def client_calls(client: str, upstream: str) -> tuple[Callable[[str], Awaitable[int]], Callable[[], Any]]:
    """A function that POSTs BODY to `upstream + path` and returns the reply's size, and a closer."""
    if client == "pyreqwest":  # built as src/sluice/providers/upstream.py builds it
        from pyreqwest.client import ClientBuilder

        reqwest = ClientBuilder().max_connections(4096).error_for_status(False).pool_max_idle_per_host(64).build()

        async def call(path: str) -> int:
            reply = await reqwest.post(upstream + path).headers(HEADERS).body_bytes(BODY).build().send()
            return len(bytes(await reply.bytes()))
        return call, reqwest.close
    if client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4096))

        async def call_aiohttp(path: str) -> int:
            async with session.post(upstream + path, data=BODY, headers=HEADERS) as reply:
                return len(await reply.read())
        return call_aiohttp, session.close
    host, port = upstream.removeprefix("http://").split(":")

    async def call_bare(path: str) -> int:  # one connection per request, one write, one read: the least possible
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode() + BODY)
        data = await reader.read()
        writer.close()
        return len(data)

    async def nothing() -> None:
        return None
    return call_bare, nothing


async def hold(client: str, upstream: str, held: int, trace: bool) -> tuple[float, float]:
    """RSS growth and traced Python memory per request (kB) while `held` requests wait for the slow path."""
    call, close = await client_calls(client, upstream)
    await asyncio.gather(*(call("/v1/chat/completions") for _ in range(50)))
    await asyncio.sleep(0.3)
    if trace:
        tracemalloc.start()
    before = rss_mb()
    tasks = [asyncio.create_task(call("/slow/v1/chat/completions")) for _ in range(held)]
    await asyncio.sleep(1.2)
    grown = (rss_mb() - before) * 1024 / held
    traced = tracemalloc.get_traced_memory()[0] / 1024 / held if trace else 0.0
    await asyncio.gather(*tasks)
    await close()
    return grown, traced


def measure_client(session: Session, client: str, held: int) -> str:
    """Each figure from a fresh process, so the two runs do not share an allocator's warm pages."""
    figures = []
    for trace in (False, True):
        code = ("import asyncio, sys; sys.path.insert(0, sys.argv[1]); import held_memory; "
                "print(*asyncio.run(held_memory.hold(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == '1')))")
        out = subprocess.run(["taskset", "-c", GATEWAY_CPUS, sys.executable, "-c", code, str(BENCH), client,
                              session.upstream_url, str(held), "1" if trace else "0"],
                             capture_output=True, text=True, check=False, env={**os.environ, **ALLOCATORS})
        if out.returncode != 0:
            raise RuntimeError(f"{client}: exit {out.returncode}: {out.stderr[-1500:]}")
        figures.append([float(value) for value in out.stdout.split()])
    return (f"client {client:9} {figures[0][0]:5.1f} kB per held request, of which Python objects "
            f"{figures[1][1]:4.1f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=2000)
    args = parser.parse_args()
    session = Session(BENCH / ".run" / "held")
    try:
        for server in ("granian", "uvicorn"):
            print(measure_server(session, server, args.held), flush=True)
            time.sleep(1)
        for client in ("pyreqwest", "aiohttp", "asyncio"):
            print(measure_client(session, client, args.held), flush=True)
    finally:
        session.close()


if __name__ == "__main__":
    main()
