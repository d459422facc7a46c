"""Where a target's memory is, stage by stage: RSS, PSS and anonymous memory of each process of its tree.

`.venv/bin/python bench/memory_probe.py [--target sluice|floor] [--stages chat,ladder,slow] [ENV=VALUE ...]`
starts the bench upstream and the target pinned as `bench/run.py` does (ENV=VALUE pairs go to Sluice's
environment), then prints one line per stage: warmed-up idle; after chat at 16 connections (`--rounds` × 5 s);
after 3 s each at 32, 64 and 128 connections and 5 s later; after 8 s of 2,000 connections to the upstream that
answers after 1.5 s, then 5 s and 15 s later. Findings: docs/benchmarks.md, "Memory".
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import catalog
import procs
from loadgen import Call, run_wrk
from measure import Session

ROLLUP = ("Rss", "Pss", "Anonymous")


def rollup(pid: int) -> dict[str, float]:
    """A process's smaps_rollup figures in MB, and its thread count."""
    found: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key in ROLLUP:
                    found[key] = int(value.split()[0]) / 1024
        found["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        pass
    return found


def report(stage: str, proc: procs.Proc) -> None:
    figures = [rollup(pid) for pid in proc.tree()]
    each = " | ".join(f"rss={f.get('Rss', 0):.0f} pss={f.get('Pss', 0):.0f} anon={f.get('Anonymous', 0):.0f} "
                      f"threads={f.get('threads', 0):.0f}" for f in figures)
    print(f"{stage:30} {each} || tree RSS={sum(f.get('Rss', 0) for f in figures):.0f} "
          f"PSS={sum(f.get('Pss', 0) for f in figures):.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="sluice", choices=("sluice", "floor", "floor_aiohttp"))
    parser.add_argument("--stages", default="chat,ladder,slow")
    parser.add_argument("--rounds", type=int, default=4, help="5 s chat runs at 16 connections")
    parser.add_argument("env", nargs="*", help="ENV=VALUE for Sluice's environment")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    session = Session(Path(__file__).parent / ".run" / "memory")
    try:
        target = catalog.build(lambda: session.upstream_url, 1, env)[args.target]
        with session.started(target) as (proc, port):
            chat, slow = target.call(port, "chat"), target.call(port, "slow")
            assert isinstance(chat, Call) and isinstance(slow, Call)
            run_wrk(chat, 8, 3)
            time.sleep(0.5)
            report("idle (warmed up)", proc)
            stages = args.stages.split(",")
            if "chat" in stages:
                runs = [run_wrk(chat, 16, 5) for _ in range(args.rounds)]
                report(f"chat: {sum(r.requests for r in runs):,} requests, {sum(r.errors for r in runs)} errors",
                       proc)
            if "ladder" in stages:
                with procs.RssSampler(proc) as sampler:
                    errors = sum(run_wrk(chat, connections, 3).errors for connections in (32, 64, 128))
                report(f"ladder to 128: peak {sampler.peak:.0f}, {errors} errors", proc)
                time.sleep(5)
                report("ladder, 5 s later", proc)
            if "slow" in stages:
                with procs.RssSampler(proc) as sampler:
                    held = run_wrk(slow, 2000, 8, timeout_s=15)
                report(f"slow: {held.requests} answered, {held.errors} errors, peak {sampler.peak:.0f} "
                       f"(PSS {sampler.peak_pss:.0f})", proc)
                for wait, label in ((5, "5 s"), (10, "15 s")):
                    time.sleep(wait)
                    report(f"slow, {label} later", proc)
    finally:
        session.close()


if __name__ == "__main__":
    main()
