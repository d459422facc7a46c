"""`sluice serve` raises its open-files limit so a worker can hold its connections."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource, sys
from sluice.serve.limits import raise_open_files_limit
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(raise_open_files_limit(int(sys.argv[1])), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def _run(wanted: int) -> list[int]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(wanted)], capture_output=True, text=True, check=True)
    return [int(value) for value in done.stdout.split()]


def test_the_soft_limit_is_raised_to_what_is_wanted() -> None:
    returned, soft, hard = _run(1000)
    assert returned == soft == (1000 if hard == -1 else min(1000, hard))


def test_never_past_the_hard_limit_nor_lowered() -> None:
    returned, soft, hard = _run(10**9)
    if hard != -1:
        assert returned == soft == hard
    assert _run(100)[:2] == [256, 256]
