"""A worker's threads ask for short scheduler slices (Linux 6.12+), keeping their nice value."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import os, threading, time
from sluice.serve.sched_slice import shorten_slices

def slice_of(tid):
    for line in open(f"/proc/self/task/{tid}/sched"):
        if line.startswith("se.slice"):
            return int(line.split(":")[1])

started = threading.Event()
tids = {}
def idle(name):
    tids[name] = threading.get_native_id()
    started.set()
    time.sleep(1)

before = threading.Thread(target=idle, args=("before",)); before.start(); started.wait(); started.clear()
os.setpriority(os.PRIO_PROCESS, tids["before"], 5)
print("set", shorten_slices(300))
after = threading.Thread(target=idle, args=("after",)); after.start(); started.wait()
main = threading.get_native_id()
print("slices", slice_of(main), slice_of(tids["before"]), slice_of(tids["after"]))
print("nice", os.getpriority(os.PRIO_PROCESS, main), os.getpriority(os.PRIO_PROCESS, tids["before"]))
"""


def custom_slices_supported() -> bool:
    """Linux 6.12 and later honour a SCHED_OTHER thread's own slice."""
    if not sys.platform.startswith("linux"):
        return False
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (6, 12)


@pytest.mark.skipif(not custom_slices_supported(), reason="the kernel has no per-thread slices (Linux < 6.12)")
def test_every_thread_gets_the_slice_and_keeps_its_nice_value() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=30)
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert int(found["set"]) >= 2
    assert found["slices"].split() == ["300000"] * 3  # the main thread, one started before and one after
    assert found["nice"].split() == ["0", "5"]
