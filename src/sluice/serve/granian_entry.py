"""The process `sluice serve` becomes once its checks pass: granian's supervisor, with only granian and logging loaded.

`sluice serve` loads the config, settings and their validation libraries to check them; replacing itself (exec)
with this module leaves those behind, so the supervisor, which only starts, watches and stops the workers, is
~17 MB smaller (docs/benchmarks.md, "Memory"). Each worker builds the app from the environment, as before.
A worker that dies (killed, crashed) is replaced; one that dies again within 5.5 s of its replacement (a crash
loop, e.g. a start-up that always fails) stops the server, as granian decides.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast

from sluice.serve.limits import BACKLOG
from sluice.telemetry.supervisor_logs import GRANIAN_LOGGING, LogFormat, configure_supervisor_logging


def command(host: str, port: int, workers: int, log_format: str, max_concurrency: int) -> list[str]:
    """The argv that execs this module with these settings."""
    return [sys.executable, "-m", "sluice.serve.granian_entry", host, str(port), str(workers), log_format,
            str(max_concurrency)]


def main(argv: Sequence[str]) -> int:
    from granian.constants import Interfaces, Loops  # here, so `command` loads nothing heavy in `sluice serve`
    from granian.server import Server

    host, port, workers, log_format, max_concurrency = argv
    configure_supervisor_logging(cast(LogFormat, log_format))
    Server("sluice.app:app_from_env", address=host, port=int(port), workers=int(workers), interface=Interfaces.ASGI,
           factory=True, loop=Loops.uvloop, log_access=False, workers_kill_timeout=30, backlog=BACKLOG,
           backpressure=int(max_concurrency),
           respawn_failed_workers=True, log_dictconfig=GRANIAN_LOGGING).serve()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
