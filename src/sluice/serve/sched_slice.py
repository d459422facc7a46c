"""Asks Linux for short scheduler slices on a worker's threads, so the hand-offs between them wait less.

Each request crosses between a worker's threads several times: granian's Tokio thread hands it to the event loop,
the loop to pyreqwest's Tokio thread and back, and the loop to granian again. On a busy core, Linux's EEVDF
scheduler (6.6+) lets a thread that was woken up wait until the running one's slice ends (1.4 ms by default on a
2-core machine), so every hand-off can cost up to a slice. Since 6.12 a thread may ask for a shorter slice
(`sched_setattr` with `sched_runtime` under SCHED_OTHER, clamped to 0.1-100 ms), which lets it preempt sooner
when woken; its share of the CPU is unchanged. Measured (docs/benchmarks.md, "Scheduler slices"): at 8
connections 4,043 -> 5,292 req/s and p99 7.0 -> 5.7 ms; at 32, the same req/s and p99 13.5 -> 12.0 ms.

Python's `os` module has no `sched_setattr`, hence the raw system call. Older kernels accept the call and ignore
the slice; other systems are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
import sys

logger = logging.getLogger("sluice")

SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
SCHED_OTHER = 0
_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr, version 1 (56 bytes)


def shorten_slices(slice_us: int) -> int:
    """Give every thread of this process a `slice_us` slice (0: the kernel's default); threads started later
    inherit it from the thread that starts them. Keeps each thread's nice value; skips threads under another
    policy. Returns how many threads were set."""
    number = SYS_SCHED_SETATTR.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    done = 0
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        try:
            if os.sched_getscheduler(tid) != SCHED_OTHER:
                continue
            nice = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:  # the thread ended meanwhile
            continue
        attr = ctypes.create_string_buffer(_ATTR.pack(_ATTR.size, SCHED_OTHER, 0, nice, 0, slice_us * 1000,
                                                      0, 0, 0, 0))
        if libc.syscall(number, tid, attr, 0) == 0:
            done += 1
        else:
            logger.debug("sched_setattr on thread %d: %s", tid, os.strerror(ctypes.get_errno()))
    return done
