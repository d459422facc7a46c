"""Where a running gateway can be found (its pid file) and what its config reloads came to (a small JSON file).

The supervisor writes both in the data dir: `sluice-<port>.pid` for `sluice reload` to find it, and
`sluice-<pid>.reloads.json` with the counts its workers show as `sluice_config_reloads_total{result}` and the
last outcome, which `sluice reload` prints; it removes both when it stops. The standard library only: granian's
supervisor imports this module.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

COUNTS_ENV = "SLUICE_RELOAD_COUNTS_FILE"
"""Set by the supervisor for its workers: the file their /metrics reads the reload counts from."""


def pid_file(data_dir: str | Path, port: int) -> Path:
    return Path(data_dir) / f"sluice-{port}.pid"


def counts_file(data_dir: str | Path, pid: int) -> Path:
    return Path(data_dir) / f"sluice-{pid}.reloads.json"


def counts_file_from_env() -> str | None:
    """The reload counts file of the supervisor this worker runs under, if any (uvicorn and tests have none)."""
    return os.environ.get(COUNTS_ENV) or None


@dataclass
class ReloadCounts:
    """How many reloads took effect (`success`) or were refused or failed with the running config kept (`failure`),
    and the last outcome's one-line message."""

    success: int = 0
    failure: int = 0
    last: dict[str, str | float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.success + self.failure

    def record(self, ok: bool, message: str) -> None:
        if ok:
            self.success += 1
        else:
            self.failure += 1
        self.last = {"result": "success" if ok else "failure", "message": message, "at": time.time()}


def read_counts(path: str | Path) -> ReloadCounts:
    """The counts in `path`; zeros when it is missing or half-written."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        return ReloadCounts(int(document["success"]), int(document["failure"]), dict(document.get("last") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return ReloadCounts()


def write_counts(path: str | Path, counts: ReloadCounts) -> None:
    """Replace the file at once (a reader never sees half of it)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(counts)), encoding="utf-8")
    partial.replace(target)
