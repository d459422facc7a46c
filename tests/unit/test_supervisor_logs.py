"""granian's supervisor logs the same JSON lines as the workers, without loading structlog."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable

from sluice.telemetry.logs import configure_logging
from sluice.telemetry.supervisor_logs import configure_supervisor_logging


def _line(configure: Callable[..., object]) -> dict[str, object]:
    stream = io.StringIO()
    configure("json", stream=stream)
    logging.getLogger("_granian").info("Spawning worker-%s with PID: %s", 1, 4242)
    parsed: dict[str, object] = json.loads(stream.getvalue().splitlines()[-1])
    return parsed


def test_the_same_keys_and_values_as_a_workers_line() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        supervisor, worker = _line(configure_supervisor_logging), _line(configure_logging)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert set(supervisor) == set(worker) == {"event", "level", "logger", "timestamp"}
    assert {key: supervisor[key] for key in ("event", "level", "logger")} == {
        key: worker[key] for key in ("event", "level", "logger")}
    assert supervisor["event"] == "Spawning worker-1 with PID: 4242"
    assert str(supervisor["timestamp"]).endswith("Z") and str(worker["timestamp"]).endswith("Z")


def test_the_supervisor_module_loads_no_structlog() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, sluice.serve.granian_entry; "
                           "print(sorted(m for m in ('structlog', 'orjson', 'pydantic') if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_worker_forked_from_the_supervisor_logs_each_line_once() -> None:
    """granian forks its workers: the app's logging replaces the supervisor's handler rather than adding to it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    supervisor, worker = io.StringIO(), io.StringIO()
    try:
        configure_supervisor_logging("json", stream=supervisor)
        configure_logging("json", stream=worker)
        logging.getLogger("sluice.test").warning("one event")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert supervisor.getvalue() == ""
    assert [json.loads(line)["event"] for line in worker.getvalue().splitlines()] == ["one event"]
