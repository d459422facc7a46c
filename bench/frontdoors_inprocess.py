"""CPU per request of the front doors and the chat route, complete and streamed, each called in process (ASGI
scope/receive/send, N concurrent calls) against the nginx+Lua benchmark upstream on bench/sluice-bench.yaml; this
process on the first core, nginx on the last; kinds in turn, order reversed every other round, medians. Compare
kinds within one run (a door ÷ the chat route of the same shape), as bench/run.py --frontdoors does across processes.

    .venv/bin/python bench/frontdoors_inprocess.py [--rounds 5] [--requests 4000] [--concurrency 32]
    [--only chat-stream,responses-stream] [--profile KIND] (cProfile of one kind, printed sorted by own time)"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import tempfile
from pathlib import Path

import procs
from frontdoors import messages_body, responses_body
from service_inprocess import RELAYED, lifespan, load, scope_of, wait_for
from targets import SLUICE_KEY, chat_body, upstream_launch

CONFIG = Path(__file__).resolve().parent / "sluice-bench.yaml"
KINDS: dict[str, tuple[str, str, bytes]] = {
    "chat": ("POST", "/v1/chat/completions", chat_body("gpt-bench")),
    "messages": ("POST", "/v1/messages", messages_body("gpt-bench", False)),
    "messages-native": ("POST", "/v1/messages", messages_body("claude-bench", False)),
    "responses": ("POST", "/v1/responses", responses_body("gpt-bench", False)),
    "chat-stream": ("POST", "/v1/chat/completions", chat_body("gpt-bench", stream=True)),
    "messages-stream": ("POST", "/v1/messages", messages_body("gpt-bench", True)),
    "messages-native-stream": ("POST", "/v1/messages", messages_body("claude-bench", True)),
    "responses-stream": ("POST", "/v1/responses", responses_body("gpt-bench", True)),
}


async def main(args: argparse.Namespace, upstream: str, port: int) -> None:
    """Sluice on the benchmark config started, warmed up, then measured or profiled."""
    os.environ["BENCH_UPSTREAM"] = upstream
    from sluice.app import create_app
    from sluice.config import load_config
    from sluice.settings import Settings

    with tempfile.TemporaryDirectory(prefix="sluice-doors-inprocess-") as folder:
        settings = Settings(api_keys=[SLUICE_KEY], redis_url=None, data_dir=folder, build="bench")
        sluice = create_app(load_config(CONFIG), settings)
        stop = await lifespan(sluice)
        names = [name for name in KINDS if not args.only or name in args.only.split(",")]
        if args.profile and args.profile not in names:
            names.append(args.profile)
        scopes = {name: scope_of(*KINDS[name], port=port, auth=True) for name in names}
        for name in names:  # warm-up: connections opened, code paths imported
            await load(sluice, scopes[name], KINDS[name][2], 500, args.concurrency)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await load(sluice, scopes[args.profile], KINDS[args.profile][2], args.requests, args.concurrency)
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
        else:
            found: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    RELAYED[0] = 0
                    found[name].append(await load(sluice, scopes[name], KINDS[name][2], args.requests,
                                                  args.concurrency))
            medians = {name: statistics.median(values) for name, values in found.items()}
            for name in names:
                base = "chat-stream" if name.endswith("stream") else "chat"
                ratio = f"  chat ÷ this {medians[base] / medians[name]:.3f}" if base in medians else ""
                print(f"{name:24s} {medians[name]:7.1f} µs/req{ratio}  (runs: "
                      f"{', '.join(f'{v:.0f}' for v in found[name])})")
        await stop()


def run() -> None:
    """Parse the arguments, pin, start the upstream, run `main`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=50)
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
    with tempfile.NamedTemporaryFile(prefix="sluice-bench-nginx-doors-inprocess-", suffix=".log") as log:
        nginx = subprocess.Popen(pin + launch.cmd, stdout=log, stderr=log)
        try:
            wait_for(upstream_port)
            asyncio.run(main(args, f"http://127.0.0.1:{upstream_port}", 8000))
        finally:
            nginx.terminate()
            nginx.wait()


if __name__ == "__main__":
    run()
