"""`sluice reload`: find the running gateway's supervisor, send it SIGHUP, and report what came of it."""

from __future__ import annotations

import os
import signal
import sys
import time

from sluice.serve.reloads import counts_file, pid_file, read_counts


def reload(data_dir: str, port: int, pid: int | None, timeout: float) -> int:
    """0 once the gateway serves the reloaded config; 1 if it refused it, failed, or cannot be found."""
    if pid is None:
        path = pid_file(data_dir, port)
        try:
            pid = int(path.read_text().strip())
        except FileNotFoundError:
            return _fail(f"no gateway on port {port} found: {path} does not exist (is `sluice serve` running with "
                         "this SLUICE_DATA_DIR? --pid PID names the process)")
        except (OSError, ValueError) as exc:
            return _fail(f"cannot read {path}: {exc}")
    counts = counts_file(data_dir, pid)
    before = read_counts(counts).total
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return _fail(f"no process {pid}: the gateway is not running")
    except PermissionError:
        return _fail(f"not allowed to signal process {pid}")
    if not counts.exists():
        print(f"sent SIGHUP to the gateway (PID {pid}); its log says whether the new config was taken")
        return 0
    deadline = time.monotonic() + timeout
    while (outcome := read_counts(counts)).total == before:
        if time.monotonic() > deadline:
            return _fail(f"sent SIGHUP to the gateway (PID {pid}), no outcome within {timeout:.0f} s; see its log")
        time.sleep(0.1)
    message = str(outcome.last.get("message", ""))
    if outcome.last.get("result") != "success":
        return _fail(message)
    print(message)
    return 0


def _fail(message: str) -> int:
    print(f"sluice: {message}", file=sys.stderr)
    return 1
