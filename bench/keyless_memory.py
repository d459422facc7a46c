"""Memory held by requests without an API key: the RSS growth of a served gateway's whole process tree.

`.venv/bin/python bench/keyless_memory.py [--requests 20000] [--request-log on|off|no-sinks] [--workers 1]
[--warm-up 5000] [--rounds 1]` serves `sluice serve` (mock provider, SLUICE_API_KEYS set, the request log on by
default as a user gets it, a fresh data directory; `no-sinks` keeps the writer process but with `database: false,
stdout: false`), sends `--warm-up` keyless chat requests, then `--requests` more over keep-alive connections
(`--rounds` times), and prints the tree's RSS (every process: supervisor, worker, request log writer) before,
after and 3 s later.

Issue 14: one shared exception re-raised for every keyless request held ~79 MB per 10,000; the bound is 2 MB per
20,000. The warm-up is 5,000 because a writer that has fallen behind once holds SQLite's page cache and the
statements of its batch sizes (~2.5 MB, once: later rounds add nothing), which 1,000 requests did not reach; a
growth that repeats round after round is a leak, one that stops is a working set.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import threading
import time
from pathlib import Path

import procs

ROOT = Path(__file__).parent.parent
CONFIG = """
providers: {mock: {type: mock}}
models: [{name: mock, provider: mock, model: mock-1}]
request_log: {%s}
"""
LOG_SETTINGS = {"on": "enabled: true", "off": "enabled: false",
                "no-sinks": "enabled: true, database: false, stdout: false"}
BODY = b'{"model":"mock","messages":[{"role":"user","content":"hi"}]}'
CONNECTIONS = 4


def keyless(port: int, count: int) -> int:
    """Send `count` keyless chat requests over one keep-alive connection; the number answered 401."""
    refused = sent = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while sent < count:
            try:
                conn.request("POST", "/v1/chat/completions", body=BODY, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                conn.close()  # the server closed the kept-alive connection: send it again on a new one
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            sent += 1
            refused += response.status == 401
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()
    return refused


def load(port: int, count: int) -> int:
    """`count` keyless requests spread over `CONNECTIONS` threads."""
    shares = [count // CONNECTIONS + (index < count % CONNECTIONS) for index in range(CONNECTIONS)]
    results = [0] * CONNECTIONS

    def run(index: int) -> None:
        results[index] = keyless(port, shares[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(results)


def status_mb(pid: int) -> dict[str, float]:
    """A process's resident memory by kind (RssAnon, RssFile, RssShmem) in MB, from /proc/<pid>/status."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                found[name.removeprefix("Rss").lower()] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found


def tree_mb(proc: procs.Proc) -> tuple[float, str]:
    """The tree's RSS in MB, and each process's share (anonymous, file-backed, shared memory)."""
    parts = [(pid, procs._rss_kb(pid) / 1024, status_mb(pid)) for pid in proc.tree()]
    shown = ", ".join(f"{pid}: {mb:.1f} = " + " + ".join(f"{kind} {value:.1f}" for kind, value in kinds.items())
                      for pid, mb, kinds in parts)
    return sum(mb for _, mb, _ in parts), shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--request-log", choices=tuple(LOG_SETTINGS), default="on")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warm-up", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=1, help="measure this many times in a row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-keyless-") as folder:
        data = Path(folder)
        config = data / "sluice.yaml"
        config.write_text(CONFIG % LOG_SETTINGS[args.request_log])
        port = procs.free_port()
        proc = procs.start("sluice", [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host",
                                      "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
                           cpus=None, log_dir=data, env={"SLUICE_API_KEYS": "sk-bench-key",
                                                         "SLUICE_DATA_DIR": str(data / "data")}, cwd=data)
        try:
            def health(conn: http.client.HTTPConnection) -> int:
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                return response.status

            procs.wait_ready(proc, port, health, 60)
            load(port, args.warm_up)
            time.sleep(2)
            for round_ in range(1, args.rounds + 1):
                before, parts_before = tree_mb(proc)
                started = time.monotonic()
                refused = load(port, args.requests)
                seconds = time.monotonic() - started
                after, parts_after = tree_mb(proc)
                time.sleep(3)
                settled, parts_settled = tree_mb(proc)
                print(f"{'' if args.rounds == 1 else f'round {round_}: '}keyless requests: {args.requests} "
                      f"({refused} answered 401) in {seconds:.1f} s, request log {args.request_log}, "
                      f"{args.workers} worker(s), after {args.warm_up} to warm up")
                print(f"tree RSS before: {before:.1f} MB ({parts_before})")
                print(f"tree RSS after:  {after:.1f} MB ({parts_after})")
                print(f"tree RSS 3 s later: {settled:.1f} MB ({parts_settled})")
                print(f"growth: {after - before:+.1f} MB (3 s later {settled - before:+.1f} MB)", flush=True)
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
