"""The process `sluice serve` becomes once its checks pass: granian's supervisor, with only granian and logging loaded.

`sluice serve` loads the config, settings and their validation libraries to check them; replacing itself (exec)
with this module leaves those behind, so the supervisor, which only starts, watches and stops the workers, is
~17 MB smaller (docs/benchmarks.md, "Memory"). Each worker builds the app from the environment, as before.
A worker that dies (killed, crashed) is replaced; one that dies again within 5.5 s of its replacement (a crash
loop, e.g. a start-up that always fails) stops the server, as granian decides. It binds the listening socket
itself (serve/listen.py), writes its pid file for `sluice reload`, and reloads the config on SIGHUP
(serve/supervisor.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

from sluice.serve.idle_reaper import PENDING_ENV
from sluice.serve.idle_reaper import TIMEOUT_ENV as IDLE_TIMEOUT_ENV
from sluice.serve.limits import BACKLOG
from sluice.serve.listen import ListenError, listen_socket
from sluice.serve.reloads import COUNTS_ENV, counts_file, pid_file
from sluice.telemetry.supervisor_logs import GRANIAN_LOGGING, LogFormat, configure_supervisor_logging

logger = logging.getLogger("sluice.serve")


@dataclass(frozen=True)
class ServeOptions:
    """What `sluice serve` resolved, handed to the supervisor on its command line (one JSON argument)."""

    host: str
    port: int
    workers: int
    log_format: str
    max_concurrency: int
    config: str | None
    """The config file, absolute; None for the embedded defaults."""
    data_dir: str
    reuse_port: bool = False
    shutdown_grace_seconds: float = 30.0
    header_read_timeout_seconds: float = 10.0
    max_pending_connections: int | None = None
    """None: a quarter of `max_concurrency`."""


def command(options: ServeOptions) -> list[str]:
    """The argv that execs this module with these settings."""
    return [sys.executable, "-m", "sluice.serve.granian_entry", json.dumps(asdict(options))]


def main(argv: Sequence[str]) -> int:
    options = ServeOptions(**json.loads(argv[0]))
    try:
        listener = listen_socket(options.host, options.port, BACKLOG, reuse_port=options.reuse_port)
    except ListenError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    from granian.constants import Interfaces, Loops  # here, so `command` loads nothing heavy in `sluice serve`
    from granian.http import HTTP1Settings

    from sluice.serve.supervisor import SluiceServer

    configure_supervisor_logging(cast(LogFormat, options.log_format))
    pid_path, counts_path = _state_files(options)
    if counts_path is not None:
        os.environ[COUNTS_ENV] = str(counts_path)  # the workers, forked later, show the counts on /metrics
    os.environ[IDLE_TIMEOUT_ENV] = str(options.header_read_timeout_seconds)  # their silent connections' limit
    os.environ[PENDING_ENV] = str(options.max_pending_connections or max(1, options.max_concurrency // 4))
    SluiceServer("sluice.app:app_from_env", listener=listener, config_path=options.config,
                 counts_path=None if counts_path is None else str(counts_path),
                 shutdown_grace_seconds=options.shutdown_grace_seconds, pid_file=pid_path,
                 address=options.host, port=options.port, workers=options.workers, interface=Interfaces.ASGI,
                 factory=True, loop=Loops.uvloop, log_access=False, backlog=BACKLOG,
                 backpressure=options.max_concurrency, respawn_failed_workers=True,
                 http1_settings=HTTP1Settings(header_read_timeout=int(options.header_read_timeout_seconds * 1000)),
                 log_dictconfig=GRANIAN_LOGGING).serve()
    return 0


def _state_files(options: ServeOptions) -> tuple[Path | None, Path | None]:
    """The pid file and reload counts file in the data dir; none when it cannot be written, or when another live
    gateway sharing the port (`--reuse-port`) holds the pid file."""
    pid_path = pid_file(options.data_dir, options.port)
    try:
        pid_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("no pid file (cannot create %s: %s): reload with `kill -HUP %s`", pid_path.parent,
                       exc.strerror, os.getpid())
        return None, None
    holder = _live_holder(pid_path)
    if holder is not None:
        logger.warning("%s belongs to the gateway PID %s sharing this port: reload this one with "
                       "`sluice reload --pid %s`", pid_path, holder, os.getpid())
        return None, counts_file(options.data_dir, os.getpid())
    return pid_path, counts_file(options.data_dir, os.getpid())


def _live_holder(path: Path) -> int | None:
    """The pid in `path` if that process is alive and not this one."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
